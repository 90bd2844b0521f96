"""The KV-cache block size vLLM 0.33 serves a model with on a GPU: the attention backend it picks and that backend's
kernel block sizes.

Without ``--block-size`` (CacheConfig.block_size None, vllm/config/cache.py ``_apply_block_size_default``: 16,
``user_specified_block_size`` False) the platform asks the model's attention backends for their preferred size
(platforms/interface.py ``Platform.update_block_size_for_backend`` -> ``_preferred_block_size_for_backends``): one
backend's ``get_preferred_block_size(16)`` (v1/attention/backend.py: 16 if the backend supports it, else its smallest
kernel block size); two or more backends (DeepSeek sparse attention's MLA and indexer): the least common size all
support. The backend is the first valid one in the GPU's priority list (platforms/cuda.py ``_get_backend_priorities``
and ``CudaPlatform.get_attn_backend_cls``), judged without a block size when none was given; with ``--block-size``,
the first that supports it (a backend supports a size divisible by one of its kernel sizes,
``AttentionBackend.supports_block_size``), and none is "No valid attention backend found" (vLLM refuses to start).

What that gives on kvsim's GPUs:
- q/k/v attention (Llama, Qwen, gpt-oss, Gemma's sliding and full layers, which share one backend): 16 on every GPU
  (FlashAttention ``MultipleOf(16)`` first on compute capability 8.x, 9.0 and 12.x; FlashInfer [16, 32, 64] first on
  10.x), any multiple of 16 accepted;
- multi-head latent attention (DeepSeek-V2/V3, Kimi-K2): 32 on Blackwell B200 (FLASHINFER_MLA [32, 64], first on
  10.x; CUTLASS_MLA's 128 only when FlashInfer-MLA refuses the model's qk_nope_head_dim), 16 elsewhere
  (FLASH_ATTN_MLA ``MultipleOf(16)`` on 9.0, TRITON_MLA ``MultipleOf(16)`` on 8.x and 12.x);
- DeepSeek sparse attention (DeepSeek-V3.2, GLM-5): 64 (every sparse MLA backend ``MultipleOf(64)`` or 32, and the
  indexer's kernel block [64], v1/attention/backends/mla/indexer.py ``DeepseekV32IndexerBackend``); no sparse backend
  runs on 8.x.
A Gated DeltaNet hybrid (Qwen3-Next) starts from its attention backend's size and is raised to hold a state
(``sim.serving.state_groups``).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import lcm
from typing import Callable

from sim.config import Config
from sim.errors import ConfigError
from sim.model_shape import ModelSpec

DEFAULT_BLOCK_SIZE = 16  # vllm/config/cache.py CacheConfig.DEFAULT_BLOCK_SIZE

# Compute capability (major, minor) of each GPU in profiles/gpus.yaml: NVIDIA's CUDA GPU list
# (developer.nvidia.com/cuda-gpus): H100/H200 9.0, A100 8.0, A10/A40 8.6, L40/L40S/L4/RTX 4090 8.9, B200/GB200 10.0,
# RTX 5090 / RTX PRO 6000 Blackwell 12.0; H800 and H20 are GH100 parts (9.0) and A800 a GA100 (8.0), the dies of the
# H100 and A100 they are cut from. A GPU spec file of the user's may state its own (``compute_capability``).
COMPUTE_CAPABILITY: dict[str, tuple[int, int]] = {
    **{gpu: (9, 0) for gpu in ("h100-sxm", "h100-pcie", "h100-nvl", "h200", "h800", "h20")},
    **{gpu: (8, 0) for gpu in ("a100-80gb", "a100-40gb", "a800-80gb")},
    **{gpu: (8, 6) for gpu in ("a40", "a10")},
    **{gpu: (8, 9) for gpu in ("l40s", "l40", "l4", "rtx4090")},
    **{gpu: (10, 0) for gpu in ("b200", "gb200")},
    **{gpu: (12, 0) for gpu in ("rtx5090", "rtxpro6000")},
}
# a GPU spec file stating no compute_capability: the generation whose answers hold on every non-B200 GPU above
UNKNOWN_CAPABILITY = (9, 0)


@dataclass(frozen=True, slots=True)
class Backend:
    """One vLLM attention backend as block sizes see it."""

    name: str  # vLLM's AttentionBackendEnum name
    kernel_sizes: tuple[int, ...]  # get_supported_kernel_block_sizes (a MultipleOf(n) as n: supports_block_size alike)
    runs_on: Callable[[tuple[int, int]], bool]  # supports_compute_capability
    accepts: Callable[[ModelSpec], bool] = lambda spec: True  # supports_combination / head sizes, where they matter

    def supports(self, block_size: int) -> bool:
        """``AttentionBackend.supports_block_size``: a multiple of one kernel size."""
        return any(block_size % size == 0 for size in self.kernel_sizes)

    def preferred(self, default: int = DEFAULT_BLOCK_SIZE) -> int:
        """``AttentionBackend.get_preferred_block_size``: the default if supported, else the smallest kernel size."""
        return default if self.supports(default) else min(self.kernel_sizes)


def _major(*majors: int) -> Callable[[tuple[int, int]], bool]:
    return lambda capability: capability[0] in majors


def _any(capability: tuple[int, int]) -> bool:
    return True


# Kernel block sizes: v1/attention/backends/<file> get_supported_kernel_block_sizes; compute capability:
# supports_compute_capability of each.
FLASH_ATTN = Backend("FLASH_ATTN", (16,), _any)  # flash_attn.py: MultipleOf(16) (FA2 8.x/12.x, FA3 9.0, FA4 10.x)
FLASHINFER = Backend("FLASHINFER", (16, 32, 64), lambda c: (8, 0) <= c <= (12, 1),  # flashinfer.py (>= 128: trtllm)
                     lambda spec: spec.head_dim in (64, 128, 256, 512))
TRITON_ATTN = Backend("TRITON_ATTN", (16,), _any)  # triton_attn.py: MultipleOf(16)
FLEX_ATTENTION = Backend("FLEX_ATTENTION", (16,), _any)  # flex_attention.py: MultipleOf(16)
# mla/flashinfer_mla.py: [32, 64], 10.x, qk_nope_head_dim in [64, 128, 192] (supports_combination)
FLASHINFER_MLA = Backend("FLASHINFER_MLA", (32, 64), _major(10), lambda spec: spec.qk_nope_head_dim in (64, 128, 192))
CUTLASS_MLA = Backend("CUTLASS_MLA", (128,), _major(10))  # mla/cutlass_mla.py: [128], 10.x
FLASH_ATTN_MLA = Backend("FLASH_ATTN_MLA", (16,), _major(9))  # mla/flashattn_mla.py: MultipleOf(16), FA3 on 9.x
FLASHMLA = Backend("FLASHMLA", (64,), _major(9, 10))  # mla/flashmla.py: [64], 9.x and 10.x
TRITON_MLA = Backend("TRITON_MLA", (16,), _any)  # mla/triton_mla.py: MultipleOf(16)
# Sparse MLA: mla/flashattn_mla_sparse.py (MultipleOf(64), 9.x; its FA4 variant 10.x), mla/flashmla_sparse.py
# (MultipleOf(64), 9.x/10.x), mla/flashinfer_mla_sparse.py (TRTLLM MultipleOf(32) on 10.x, SM120 MultipleOf(64) on
# 12.x), mla/flashinfer_mla_sparse_sm90.py (MultipleOf(64), 9.x)
FLASH_ATTN_MLA_SPARSE = Backend("FLASH_ATTN_MLA_SPARSE", (64,), _major(9))
FLASH_ATTN_MLA_SPARSE_FA4 = Backend("FLASH_ATTN_MLA_SPARSE_FA4", (64,), _major(10))
FLASHMLA_SPARSE = Backend("FLASHMLA_SPARSE", (64,), _major(9, 10))
FLASHINFER_MLA_SPARSE = Backend("FLASHINFER_MLA_SPARSE", (32,), _major(10))
FLASHINFER_MLA_SPARSE_SM90 = Backend("FLASHINFER_MLA_SPARSE_SM90", (64,), _major(9))
FLASHINFER_MLA_SPARSE_SM120 = Backend("FLASHINFER_MLA_SPARSE_SM120", (64,), _major(12))
# The sparse-attention indexer's own cache (mla/indexer.py DeepseekV32IndexerBackend: [64] on CUDA), a second backend
# beside the sparse MLA one: the KV block must split into its kernel blocks too (v1/worker/utils.py
# select_common_block_size: "No common block size" otherwise)
INDEXER = Backend("DEEPSEEK_V32_INDEXER", (64,), _any)


def priorities(spec: ModelSpec, capability: tuple[int, int]) -> list[Backend]:
    """The backends vLLM tries for ``spec``'s attention on a GPU of ``capability``, best first
    (platforms/cuda.py ``_get_backend_priorities``: bf16 KV, causal decoder; backends a model of this kind would
    refuse as MLA / non-MLA / sparse / non-sparse are left out)."""
    major = capability[0]
    if spec.is_sparse_attention:
        if major == 10:  # bf16 KV: FA4 first at <= 16 heads a rank, else FlashMLA; an fp8 KV prefers FlashInfer
            return [FLASH_ATTN_MLA_SPARSE_FA4, FLASHMLA_SPARSE, FLASHINFER_MLA_SPARSE]
        if major == 12:
            return [FLASHINFER_MLA_SPARSE_SM120]
        return [FLASH_ATTN_MLA_SPARSE, FLASHMLA_SPARSE, FLASHINFER_MLA_SPARSE_SM90]
    if spec.is_mla:
        if major == 10:  # (TOKENSPEED_MLA, second, takes R1 dims with an FP8 KV only; its sizes are FlashInfer-MLA's)
            return [FLASHINFER_MLA, CUTLASS_MLA, FLASH_ATTN_MLA, FLASHMLA, TRITON_MLA]
        if major == 12:
            return [TRITON_MLA]
        return [FLASH_ATTN_MLA, FLASHMLA, FLASHINFER_MLA, TRITON_MLA]
    if major == 10:
        return [FLASHINFER, FLASH_ATTN, TRITON_ATTN, FLEX_ATTENTION]
    return [FLASH_ATTN, FLASHINFER, TRITON_ATTN, FLEX_ATTENTION]


def capability_of(gpu: str) -> tuple[int, int]:
    """The compute capability of ``gpu``: a profiles/gpus.yaml name or alias, or a spec file's path (its
    ``compute_capability``; ``UNKNOWN_CAPABILITY`` where it states none)."""
    from sim.config_yaml import names_a_path
    from sim.specs import canonical_gpu, gpu_spec

    listed = canonical_gpu(gpu)
    if listed in COMPUTE_CAPABILITY:
        return COMPUTE_CAPABILITY[listed]
    if listed is None and not names_a_path(gpu):
        return UNKNOWN_CAPABILITY
    return gpu_spec(listed or gpu).compute_capability or UNKNOWN_CAPABILITY


def selected_backends(spec: ModelSpec, gpu: str, block_size: int | None = None) -> list[Backend]:
    """The attention backends vLLM runs ``spec`` with on ``gpu`` (the sparse indexer's beside the MLA one), given
    ``--block-size`` or not (``get_attn_backend_cls``: the first valid backend, one that supports the block size
    when given); [] where none is valid: vLLM refuses to start."""
    capability = capability_of(gpu)
    valid = [b for b in priorities(spec, capability)
             if b.runs_on(capability) and b.accepts(spec) and (block_size is None or b.supports(block_size))]
    if not valid:
        return []
    extra = [INDEXER] if spec.is_sparse_attention else []
    return [valid[0], *extra]


def default_block_size(spec: ModelSpec, gpu: str) -> int:
    """vLLM's block size for ``spec`` on ``gpu`` without ``--block-size``
    (``Platform._preferred_block_size_for_backends``; before a Gated DeltaNet hybrid's raise)."""
    backends = selected_backends(spec, gpu) or priorities(spec, capability_of(gpu))[:1]
    if len(backends) == 1:
        return backends[0].preferred()
    if all(b.supports(DEFAULT_BLOCK_SIZE) for b in backends):
        return DEFAULT_BLOCK_SIZE
    candidates = sorted({lcm(a, b) for a in backends[0].kernel_sizes for b in backends[1].kernel_sizes})
    return next(c for c in candidates if all(b.supports(c) for b in backends))


def unsupported_block_size(spec: ModelSpec, gpu: str, block_size: int | None) -> str | None:
    """Why vLLM 0.33 refuses to serve ``spec`` on ``gpu`` with ``--block-size block_size`` (None: without one);
    None when it serves it."""
    capability = capability_of(gpu)
    tried = priorities(spec, capability)
    if not any(b.runs_on(capability) and b.accepts(spec) for b in tried):
        return ("vLLM 0.33 has no attention backend for this model on this GPU (platforms/cuda.py "
                f"get_attn_backend_cls: none of {', '.join(b.name for b in tried)} runs on compute capability "
                f"{capability[0]}.{capability[1]})")
    if block_size is None:
        return None
    attention = selected_backends(spec, gpu, block_size)
    if not attention:
        least = min(s for b in tried if b.runs_on(capability) for s in b.kernel_sizes)
        return (f"no vLLM 0.33 attention backend for this model on this GPU takes {block_size}-token blocks (each "
                f"takes multiples of {least} tokens or more: platforms/cuda.py get_attn_backend_cls)")
    rejecting = [b for b in attention if not b.supports(block_size)]
    if rejecting:
        return (f"vLLM 0.33's {rejecting[0].name} kernels take multiples of {rejecting[0].kernel_sizes[0]}-token blocks "
                "(v1/worker/utils.py select_common_block_size)")
    return None


def check_block_size(config: Config) -> None:
    """Refuse a block size vLLM 0.33 would not start with for the model on the GPU (``serving.block_size``; null:
    the model on the GPU at all), as ``vllm serve`` refuses it (``attention_backend.unsupported_block_size``)."""
    from sim.specs import model_spec

    size = config.serving.block_size
    why = unsupported_block_size(model_spec(config.model), config.hardware.gpu, size)
    if why is not None:
        setting = f"serving.block_size={size}" if size is not None else "serving.block_size=null"
        raise ConfigError(f"{setting} with model {config.model} on {config.hardware.gpu}: {why}")
