"""The GPU time a kernel takes whatever its size: what the roofline's bytes and FLOPs leave out of a step.

A kernel's time is not its bytes over the bandwidth alone: it ramps up, fills and drains the GPU's pipelines and its
last wave of thread blocks, and within a CUDA graph the next kernel starts a few microseconds later. The roofline
adds, per layer and step:
- ``gemm_s`` for each GEMM kernel the layer launches (``attention_projection_kernels``, ``mlp_kernels``: vLLM's fused
  projections, one kernel each), and for each of its elementwise kernels (``sim.serving.elementwise``: norms, rotary
  embedding, activation, MoE routing, FP8 activation quantization);
- ``attention_s`` for the attention call (the KV-cache write and the attention kernel);
- ``attention_tile_s`` for each thread block of a step's attention with a prefill in it, spread over the SMs
  (``sim.serving.attention_waves``).
Measured: NVIDIA AIConfigurator's per-operator tables of vLLM (github.com/ai-dynamo/aiconfigurator,
``systems/data/<gpu>/{gemm,attention}/vllm/<version>/*.parquet``, CUDA-graph replays): see
``config.yaml``'s compute section for the figures and ``tools/README.md`` for the fit. All zero: the plain roofline.
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.model_shape import ModelSpec

US = 1e-6


@dataclass(frozen=True)
class KernelFloors:
    """Per-kernel GPU time floors (seconds)."""

    gemm_s: float = 0.0  # per GEMM kernel
    attention_s: float = 0.0  # per attention call of a layer (cache write and attention kernel)
    attention_tile_s: float = 0.0  # per thread block of the attention kernel (sim.serving.attention_waves)

    @classmethod
    def from_us(cls, gemm_us: float, attention_us: float, attention_tile_us: float = 0.0) -> KernelFloors:
        return cls(gemm_us * US, attention_us * US, attention_tile_us * US)


def attention_projection_kernels(model: ModelSpec) -> int:
    """GEMM kernels of a layer's attention projections in vLLM: ``qkv_proj`` and ``o_proj`` (llama.py); with
    multi-head latent attention (deepseek_v2.py) ``fused_qkv_a_proj``, ``q_b_proj``, ``kv_b_proj`` (a decode's two
    absorbed batched GEMMs, W_UK and W_UV, in its place) and ``o_proj``; a sparse-attention indexer adds ``wq_b`` and
    the fused ``wk_weights_proj``."""
    if not model.is_mla:
        return 2
    return 5 + (2 if model.is_sparse_attention else 0)


# an MoE layer's router ``gate`` and the fused experts' two grouped GEMMs (fused_moe: w13, w2)
ROUTED_EXPERT_KERNELS = 3


def mlp_kernels(model: ModelSpec, moe_layer: bool) -> int:
    """GEMM kernels of a layer's MLP in vLLM: ``gate_up_proj`` and ``down_proj`` (a plain MLP's up and down); an MoE
    layer's router and routed experts (``ROUTED_EXPERT_KERNELS``) and, where the model has them, the shared experts'
    gate_up and down and Qwen2-MoE's shared-expert gate."""
    if not moe_layer:
        return 2
    shared = 2 if model.shared_expert_intermediate_size else 0
    return ROUTED_EXPERT_KERNELS + shared + (1 if model.shared_expert_gate else 0)
