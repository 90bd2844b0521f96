"""The elementwise kernels of a decoder layer: what runs between its GEMMs and its attention call.

The roofline's floors and efficiencies are fitted to measured GEMM and attention operators (NVIDIA AIConfigurator's
tables: ``sim.serving.kernel_floors``), so a layer priced as its GEMMs and attention leaves out the kernels vLLM
launches between them, in series on the same stream (vllm/model_executor/models/llama.py ``LlamaDecoderLayer``):
the two RMSNorms (``input_layernorm``, ``post_attention_layernorm``, each fused with the residual add:
``fused_add_rms_norm`` reads the input and the residual and writes both), the rotary embedding over q and k
(``rotary_emb``, in place), and the MLP's activation (``SiluAndMul``: reads gate and up, writes their product; a
plain MLP's activation reads and writes its width). Multi-head latent attention adds ``q_a_layernorm`` (where there
is a q_lora_rank) and ``kv_a_layernorm`` (deepseek_v2.py), whose rotary part is qk_rope_head_dim wide.
Each kernel pays the per-kernel floor (``KernelFloors.gemm_s``: what any kernel of a CUDA graph takes whatever its
size) and its bytes at the bandwidth; none overlaps a GEMM, so the time adds to the layer's rather than joining the
GEMM's 2-norm of compute and memory. At a decode step that is the floors (4 × 3.1 µs a layer at the defaults); at a
4k-token prefill of Llama-3.1-8B on an H100 the bytes, ~0.7 GB a layer (~7 ms a step, 50 MiB of each kernel's from
L2). The norms and the activation work on every scheduled token of every rank (the norms on the whole hidden
state, which every TP rank holds; the activation on the rank's share of the MLP); a Gated DeltaNet layer is counted
as an attention layer (its own norms and gates are at least as many kernels). FP8 activation quantization before
each GEMM is not counted.

L2: each kernel reads what the kernel just before it wrote (the norm its GEMM's output, the rotary embedding
qkv_proj's q and k, the activation gate_up_proj's output) and writes what the next one reads, and the GPU's L2 is
write-back: where those bytes fit in L2 they never reach DRAM within the kernel, and move at the L2's bandwidth
(``GPUSpec.cache_bandwidth``). A kernel whose such bytes (``ElementwiseKernel.cached_bytes_per_token`` × tokens)
exceed the L2 finds the share L2 / bytes of them there (the rest at the DRAM bandwidth); the fused norm's residual,
written a GEMM, an attention and another GEMM earlier, is read from DRAM. A GPU spec without ``l2_mib``: all DRAM.
The LLMServingSim bundles' dense.csv (RTX 4090 and RTX PRO 6000) time the norms at up to 2.4x their DRAM bound
(``tests/test_elementwise.py`` compares both).
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.model_shape import ModelSpec

# fused_add_rms_norm: reads the layer's input and the residual, writes the new residual and the normed input
NORM_ACCESSES = 4


@dataclass(frozen=True)
class ElementwiseKernel:
    """Kernels of a layer alike in their L2 traffic: how many, and the bytes per token of each that the kernel
    before it wrote or that it writes (the L2 holds them while they fit)."""

    count: int
    cached_bytes_per_token: float


@dataclass(frozen=True)
class ElementwiseCost:
    """One decoder layer's elementwise kernels on one rank: how many, their bytes per scheduled token, and those of
    the bytes the L2 can hold, per kernel (``cached``; empty: all at the DRAM bandwidth)."""

    kernels: int
    bytes_per_token: float
    cached: tuple[ElementwiseKernel, ...] = ()

    def layer_time(self, tokens: float, kernel_floor_s: float, bandwidth: float, l2_bytes: int | None = None,
                   l2_bandwidth: float = 0.0) -> float:
        """Seconds of one layer's elementwise kernels for ``tokens`` tokens (``bandwidth``: the effective DRAM B/s;
        ``l2_bytes``, ``l2_bandwidth``: the GPU's L2 and its effective B/s, None: no L2 counted)."""
        if tokens <= 0:
            return 0.0
        seconds = self.kernels * kernel_floor_s + tokens * self.bytes_per_token / bandwidth
        if not l2_bytes or l2_bandwidth <= 0:
            return seconds
        for kernel in self.cached:
            held = tokens * kernel.cached_bytes_per_token
            if held > 0:  # the share of them the L2 holds moves at its bandwidth instead of DRAM's
                in_l2 = min(held, l2_bytes)
                seconds -= kernel.count * in_l2 * (1 / bandwidth - 1 / l2_bandwidth)
        return seconds


def _activation_width(model: ModelSpec) -> float:
    """The MLP activation's width per token, the mean over the layers: a dense layer's intermediate_size, an MoE
    layer's top-k experts' and the shared experts' widths (the activation runs on each routed copy of a token)."""
    routed = (model.num_experts_per_tok or 0) * (model.moe_intermediate_size or 0)
    moe = routed + (model.shared_expert_intermediate_size or 0)
    dense_layers = model.num_layers - model.moe_layers
    return (dense_layers * model.intermediate_size + model.moe_layers * moe) / model.num_layers


def elementwise_cost(model: ModelSpec, dtype_bytes: int, tensor_parallel_size: int,
                     activation: bool = True) -> ElementwiseCost:
    """The elementwise kernels of one of ``model``'s layers on one of ``tensor_parallel_size`` ranks (``activation``
    False: the norms and rotary embedding alone, what an MoE bundle's dense.csv times beside the projections, its
    experts' activation being moe.csv's)."""
    tp, m = tensor_parallel_size, model
    kernels = 2 + activation  # the two fused add + RMSNorms, the activation
    norm_bytes = 2 * NORM_ACCESSES * m.hidden_size
    # each norm: its input (the GEMM before it wrote it) and both writes are the L2's; the residual read is DRAM's
    cached = [ElementwiseKernel(2, (NORM_ACCESSES - 1) * m.hidden_size * dtype_bytes)]
    act_reads = 2 if m.gated_mlp or m.is_moe else 1  # (experts are gated MLPs)
    act_bytes = (act_reads + 1) * _activation_width(m) / tp if activation else 0.0
    if activation:  # reads gate_up's output, writes the product: all of it
        cached.append(ElementwiseKernel(1, act_bytes * dtype_bytes))
    rope_bytes = 0.0
    if m.position_encoding == "rope":
        kernels += 1
        if m.is_mla:  # the rotary part of each query head, and the one shared key part (replicated)
            rope_bytes = 2 * (m.num_attention_heads / tp + 1) * m.qk_rope_head_dim
        else:
            # a rank's query heads and its KV heads: one at least (vLLM replicates a KV head over the ranks past
            # the KV-head count, as ``RooflineCompute``'s KV heads)
            rotary = m.rotary_dim or m.head_dim
            rope_bytes = 2 * (m.num_attention_heads / tp + max(1, m.num_kv_heads // tp)) * rotary
        cached.append(ElementwiseKernel(1, rope_bytes * dtype_bytes))  # q and k in place, as the projection wrote
    if m.is_mla:  # q_a_layernorm and kv_a_layernorm, read and written whole on every rank
        latent_norms = 1 + (m.q_lora_rank is not None)
        kernels += latent_norms
        norm_bytes += 2 * ((m.q_lora_rank or 0) + m.kv_lora_rank)
        # (each reads the fused_qkv_a_proj output's part and writes it: the mean of the two's widths)
        cached.append(ElementwiseKernel(latent_norms, 2 * ((m.q_lora_rank or 0) + m.kv_lora_rank) / latent_norms
                                        * dtype_bytes))
    return ElementwiseCost(kernels, (norm_bytes + act_bytes + rope_bytes) * dtype_bytes, tuple(cached))
