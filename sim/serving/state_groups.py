"""vLLM's KV-cache layout of a Gated DeltaNet hybrid (Qwen3-Next, Qwen3.5: ``ModelSpec.linear_attention``), as
vLLM 0.33 sets it up, and the settings kvsim serves it with.

Block size (vLLM platforms/interface.py ``Platform._align_hybrid_block_size``): one pool serves the attention layers
and the state layers alike, so an attention page (block_size tokens of one layer's K and V) must hold a state (the
``MambaSpec`` page, ``GatedDeltaNet.state_bytes``): block_size is raised to the least multiple of the attention
kernel's block alignment (FlashAttention: ``MultipleOf(16)``, or the user's block size when larger) whose page holds
a state; with prefix caching (mamba_cache_mode "align") that alignment is also a multiple of the GDN prefill's
checkpoint alignment (FlashInfer's GDN prefill on Hopper: 64, v1/attention/backends/gdn_attn.py
``FLASHINFER_GDN_CHECKPOINT_ALIGNMENT``); the state page is padded to the attention page. Qwen3-Next on one H100:
cdiv(1,097,728, 16 × 2,048) × 16 = 544 tokens (576 with prefix caching).

Groups (v1/core/kv_cache_planning.py ``_get_kv_cache_groups_uniform_page_size``): the layers of each kind split into
groups of the smaller count (12 attention and 36 GDN layers: one attention group and three state groups of 12); a
pool block holds one page of each of a group's layers (``get_kv_cache_config_from_groups``: num_blocks = memory //
(group_size × page)). Without prefix caching (mamba_cache_mode "none", ``MambaModelConfig.verify_and_update_config``:
mamba_block_size = max_model_len) a request holds cdiv(tokens, block_size) attention blocks and one block in each state
group, from its first allocation to its end (``MambaManager``: cdiv(tokens, max_model_len) = 1, never skipped).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import lcm

from sim.config import Config
from sim.errors import ConfigError
from sim.kv_dtype import kv_dtype_bytes
from sim.model_shape import DTYPE_BYTES, ModelSpec

# The attention backend's block alignment (FlashAttention's get_supported_kernel_block_sizes: MultipleOf(16), the
# backend vLLM picks first on compute capability 8.x and 9.x: platforms/cuda.py _get_backend_priorities) and the GDN
# prefill's checkpoint alignment under prefix caching (FlashInfer's GDN prefill, chosen on SM90 only:
# qwen_gdn_linear_attn.py _resolve_gdn_prefill_backend; elsewhere Triton/FLA exports no checkpoints, None), per GPU.
# Blackwell (SM100: FlashInfer attention first; SM120) is not listed: its backends' block sizes are not modelled.
FLASH_ATTN_ALIGNMENT = 16
HOPPER_GDN_ALIGNMENT = 64
GPU_ALIGNMENTS: dict[str, tuple[int, int | None]] = {
    **{gpu: (FLASH_ATTN_ALIGNMENT, HOPPER_GDN_ALIGNMENT)
       for gpu in ("h100-sxm", "h100-pcie", "h100-nvl", "h200", "h800", "h20")},
    **{gpu: (FLASH_ATTN_ALIGNMENT, None)
       for gpu in ("a100-80gb", "a100-40gb", "a800-80gb", "a40", "a10", "l40s", "l40", "l4", "rtx4090")},
}


@dataclass(frozen=True, slots=True)
class StateGroups:
    """The KV-cache groups of a Gated DeltaNet hybrid at vLLM's block size, on one TP rank."""

    group_size: int  # layers of one group: a pool block holds a page of each
    attention_groups: int
    state_groups: int
    block_size: int  # tokens of an attention page
    page_bytes: int  # one layer's page: block_size tokens of K and V (a state, padded, fills one too)
    state_bytes: int  # one sequence's state in one GDN layer, before padding

    @property
    def block_bytes(self) -> int:
        """Bytes of one pool block: a page of each of a group's layers."""
        return self.group_size * self.page_bytes

    def blocks_held(self, prefix_caching: bool, checkpoints: bool) -> int:
        """State blocks one request holds at most at once (``states_held_alone``)."""
        return states_held_alone(self.state_groups, prefix_caching, checkpoints)


def states_held_alone(state_groups: int, prefix_caching: bool, checkpoints: bool) -> int:
    """State blocks one request holds at most at once, what admission must leave room for: without prefix caching
    its running state in each state group; with it (vLLM's align mode, ``sim.serving.align_state_manager``) during
    its first chunk also the prefix hit's state it starts from and, where the GDN prefill exports them
    (``exports_checkpoints``), the chunk's mid-block checkpoint, each a block in every state group. (Counting only
    two let a request whose prefix was cached pass admission and then never fit, even alone: a stall.)"""
    if not prefix_caching:
        return state_groups
    return (3 if checkpoints else 2) * state_groups


def attention_page_bytes_per_token(spec: ModelSpec, kv_bytes: int, tensor_parallel_size: int) -> int:
    """One token's K and V in one attention layer on one TP rank (vLLM ``FullAttentionSpec`` page of block 1)."""
    return 2 * max(1, spec.num_kv_heads // tensor_parallel_size) * spec.head_dim * kv_bytes


def vllm_block_size(state_bytes: int, token_bytes: int, block_size: int, alignment: int,
                    checkpoint_alignment: int | None, prefix_caching: bool) -> int:
    """The attention block size vLLM serves a GDN hybrid with, given the configured ``block_size``
    (``Platform._align_hybrid_block_size``): the least multiple of the kernel alignment (the backend's, or the
    configured block size when larger; with prefix caching its lcm with the GDN checkpoint alignment) whose page of
    ``token_bytes`` a token holds ``state_bytes``, rounded up to the backend's alignment; a larger configured size stays."""
    kernel = max(alignment, block_size)
    if prefix_caching:
        kernel = lcm(kernel, checkpoint_alignment or 1)
    raised = kernel * -(-state_bytes // (kernel * token_bytes))
    raised = alignment * -(-raised // alignment)
    return raised if block_size < raised else block_size


def _groups(attention: int, linear: int) -> tuple[int, int, int]:
    """(group size, attention groups, state groups) as ``_get_kv_cache_groups_uniform_page_size`` splits them."""
    small, large = min(attention, linear), max(attention, linear)
    size = large if large < 1.5 * small else small
    return size, -(-attention // size), -(-linear // size)


def _alignments(config: Config) -> tuple[int, int | None]:
    from sim.specs import canonical_gpu

    gpu = canonical_gpu(config.hardware.gpu) or config.hardware.gpu
    if gpu not in GPU_ALIGNMENTS:
        raise ConfigError(f"hardware.gpu={config.hardware.gpu}: the attention block size vLLM picks for model "
                          f"{config.model}'s Gated DeltaNet layers is modelled on {', '.join(GPU_ALIGNMENTS)} only "
                          "(FlashAttention's 16-token alignment; Blackwell's backends are not modelled)")
    return GPU_ALIGNMENTS[gpu]


def required_block_size(config: Config, block_size: int | None = None, prefix_caching: bool | None = None) -> int:
    """vLLM's attention block size for the run's GDN hybrid from ``block_size`` (default: the configured one, or where
    that is null the attention backend's preferred size, vLLM's start without --block-size), with the run's prefix
    caching (or ``prefix_caching``)."""
    from sim.serving.attention_backend import default_block_size
    from sim.specs import model_spec

    spec = model_spec(config.model)
    tp = config.serving.tensor_parallel_size
    kv = kv_dtype_bytes(spec, config.serving.dtype, config.serving.kv_cache_dtype)
    state = spec.linear_attention.state_bytes(DTYPE_BYTES[config.serving.dtype], tp)
    alignment, checkpoint = _alignments(config)
    if block_size is None:
        block_size = config.serving.block_size or default_block_size(spec, config.hardware.gpu)
    return vllm_block_size(state, attention_page_bytes_per_token(spec, kv, tp), block_size, alignment, checkpoint,
                           config.serving.enable_prefix_caching if prefix_caching is None else prefix_caching)


def state_groups(config: Config, tensor_parallel_size: int | None = None) -> StateGroups | None:
    """The run's groups when its model has Gated DeltaNet layers (None otherwise), at the run's block size (vLLM's
    where ``serving.block_size`` is null; ``check_state_model`` holds a set one to it), on a rank of
    ``tensor_parallel_size`` (default: the run's)."""
    from sim.serving.engine_limits import block_size
    from sim.specs import model_spec

    spec = model_spec(config.model)
    gdn = spec.linear_attention
    if gdn is None:
        return None
    tp = config.serving.tensor_parallel_size if tensor_parallel_size is None else tensor_parallel_size
    kv = kv_dtype_bytes(spec, config.serving.dtype, config.serving.kv_cache_dtype)
    size, attention, states = _groups(spec.attention_layers, gdn.layers)
    tokens = block_size(config)
    page = tokens * attention_page_bytes_per_token(spec, kv, tp)
    return StateGroups(size, attention, states, tokens, page,
                       gdn.state_bytes(DTYPE_BYTES[config.serving.dtype], tp))


def exports_checkpoints(config: Config) -> bool:
    """Whether the GDN prefill exports a mid-chunk state (an align-mode internal checkpoint): FlashInfer's, on Hopper
    (``GPU_ALIGNMENTS``: a checkpoint alignment; elsewhere the scheduler splits the prefill instead)."""
    return _alignments(config)[1] is not None


def check_state_model(config: Config, mode: str, trace_tokens: int | None = None) -> None:
    """A GDN hybrid runs where kvsim models vLLM serving it: the serving modes, single-node, cluster
    (``sim.cluster.fetch``: states fetched with the prefix) or PD (``mode`` "pd", also for ``--cluster --pd``;
    ``sim.serving.state_transfer``: push or pull, not layerwise), vLLM's hybrid KV-cache manager on,
    prefix caching off or in align mode (``sim.serving.align_state_manager``), on a GPU whose attention alignment is
    known, at vLLM's raised block size; each other case is one exit-2 line. A null ``serving.block_size`` is vLLM's
    raised one (``engine_limits.block_size``). ``trace_tokens``: the size of a trace's own block ids, replayed as the
    cache's blocks (the run's block size then is theirs, whatever the config said: ``workload.with_trace_block_size``)."""
    from sim.specs import model_spec

    spec = model_spec(config.model)
    if spec.linear_attention is None:
        return
    serving, name = config.serving, config.model
    if mode not in ("single", "pd", "cluster"):
        raise ConfigError(f"model {name}: Gated DeltaNet (linear-attention) layers are modelled in the serving modes "
                          f"only, not in mode {mode} (a block replay has no states: they follow each request's "
                          "computed tokens)")
    if mode == "pd":
        from sim.config_rules import pd_tensor_parallel

        (p_key, p), (d_key, d) = pd_tensor_parallel(config).values()
        if p != d:
            key, tp = (d_key, d) if d_key != "serving.tensor_parallel_size" else (p_key, p)
            raise ConfigError(f"config key '{key}'={tp}: model {name}'s Gated DeltaNet states cross between prefill TP "
                              f"{p} and decode TP {d} in vLLM by slicing their conv states (kv_connector/v1/"
                              "ssm_conv_transfer_utils.py), which kvsim does not model; give both roles one TP")
        if p != serving.tensor_parallel_size:
            # the run's block size (vLLM raises it from a rank's state and attention pages), the trace's blocks and the
            # states sent are sized at serving.tensor_parallel_size, not at the roles' one TP
            raise ConfigError(f"config key '{p_key}'={p}: model {name}'s Gated DeltaNet block size and states follow "
                              f"serving.tensor_parallel_size ({serving.tensor_parallel_size}); to run both roles at TP "
                              f"{p}, set serving.tensor_parallel_size={p} and leave pd.*_tensor_parallel_size null")
    if mode == "pd" and config.pd.transfer == "layerwise":
        raise ConfigError(f"model {name}: vLLM moves Gated DeltaNet states with its NixlConnector, which sends after the "
                          "prefill ends (save_kv_layer is a no-op: kv_connector/v1/nixl/connector.py), never layer by "
                          "layer: set pd.transfer=push or pull")
    if serving.disable_hybrid_kv_cache_manager:
        raise ConfigError(f"model {name}: vLLM serves Gated DeltaNet layers with its hybrid KV-cache manager only (with "
                          "it off, hybrid SSM models fail at startup: vllm/config/vllm.py): set "
                          "serving.disable_hybrid_kv_cache_manager=false")
    groups = state_groups(config)
    if groups.attention_groups != 1:
        raise ConfigError(f"model {name}: {spec.attention_layers} attention layers beside {spec.linear_attention.layers} "
                          f"Gated DeltaNet ones make {groups.attention_groups} attention groups; kvsim models one")
    want = required_block_size(config)
    if serving.block_size is not None and serving.block_size != want and serving.block_size == trace_tokens:
        from sim.serving.attention_backend import default_block_size

        own = required_block_size(config, default_block_size(spec, config.hardware.gpu))
        raise ConfigError(
            f"model {name} on {config.hardware.gpu} at TP {serving.tensor_parallel_size}: the trace's own "
            f"{trace_tokens}-token blocks (its block ids, replayed as the cache's: workload.block_mismatch=trace) are "
            f"not a block size vLLM serves it with (it raises {trace_tokens} to {want} tokens so that one page holds "
            f"a Gated DeltaNet state, platforms/interface.py _align_hybrid_block_size); replay a trace without block "
            f"ids, or with ids of {own}-token blocks")
    if serving.block_size is not None and serving.block_size != want:
        raise ConfigError(
            f"model {name} on {config.hardware.gpu} at TP {serving.tensor_parallel_size}: vLLM raises the attention "
            f"block size to {want} tokens so that one page holds a Gated DeltaNet state ({groups.state_bytes:,} bytes; "
            f"platforms/interface.py _align_hybrid_block_size): set serving.block_size={want}")
    check_state_fits_slot(config)


def check_state_fits_slot(config: Config) -> None:
    """A lower tier (DRAM/SSD/EIC) gives a state one block slot of its capacity, as vLLM's OffloadingConnector keeps
    one fixed slot per key: it must fit there. At vLLM's raised block size it always does: a rank's page holds a rank's
    state (``vllm_block_size``), TP divides the state evenly (``sim.config_rules._tp_fits_model``), and a lower tier
    stores every rank's page, so the slot (TP pages) holds the whole state (TP shares). (Qwen3-Next's entry and
    Qwen3.5's configs at TP 1-8, on Hopper and Ampere, prefix caching on or off, bf16 or fp8 KV: a state takes
    0.70-1.00 of a slot; Qwen3-Next with fp8 KV at TP 1-2 on 1,072-token blocks fills it exactly.) A setting that
    broke this would overstate the tier's capacity in states: refused, not run."""
    from sim.cache.tiers import stored_block_bytes, stored_copy_bytes
    from sim.serving.engine_limits import block_size

    state, slot = stored_copy_bytes(config), stored_block_bytes(config)
    if state > slot:
        raise ConfigError(
            f"model {config.model} at TP {config.serving.tensor_parallel_size}: a Gated DeltaNet state group's state "
            f"({state:,} bytes, every rank's) exceeds a lower tier's block slot ({slot:,} bytes, every rank's page of "
            f"a {block_size(config)}-token block); kvsim gives a state one slot (vLLM's OffloadingConnector: one "
            "fixed slot per key) and does not model a state that needs more")
