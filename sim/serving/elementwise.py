"""The elementwise kernels of a decoder layer: what runs between its GEMMs and its attention call.

The roofline's floors and efficiencies are fitted to measured GEMM and attention operators (NVIDIA AIConfigurator's
tables: ``sim.serving.kernel_floors``), so a layer priced as its GEMMs and attention leaves out the kernels vLLM
launches between them, in series on the same stream (vllm/model_executor/models/llama.py ``LlamaDecoderLayer``):
the two RMSNorms (``input_layernorm``, ``post_attention_layernorm``, each fused with the residual add:
``fused_add_rms_norm`` reads the input and the residual and writes both), the rotary embedding over q and k
(``rotary_emb``, in place), and the MLP's activation (``SiluAndMul``: reads gate and up, writes their product; a
plain MLP's activation reads and writes its width). Multi-head latent attention adds ``q_a_layernorm`` (where there
is a q_lora_rank) and ``kv_a_layernorm`` (deepseek_v2.py), whose rotary part is qk_rope_head_dim wide. By family
(``ModelSpec.norms_per_layer``, ``qk_norm``): Gemma 2/3 add two plain RMSNorms on the attention's and the MLP's
outputs (gemma2.py, gemma3.py: four norms a layer); Phi's parallel block has one LayerNorm and one sum of attention,
MLP and residual instead of the two fused norms (phi.py); Qwen3, Gemma 3, Qwen3-Next, GLM-4.5 (use_qk_norm) and
MiniMax-M2 norm q and k after qkv_proj (``q_norm``, ``k_norm``: qwen3.py). An MoE layer's activations are two
kernels where it has shared experts (their MLP's own SiluAndMul, then the routed experts'), and it adds fused_moe's
top-k over the router's logits, ``moe_align_block_size``'s two kernels, ``moe_sum`` and, with shared experts, their
add (``moe_kernels``); an FP8 checkpoint a quantization of each FP8 GEMM's input (``fp8_quant_kernels``). A kernel only
some layers run (the routing in an MoE model's dense layers) counts as the mean over the layers.
Each kernel pays the per-kernel floor (``KernelFloors.gemm_s``: what any kernel of a CUDA graph takes whatever its
size) and its bytes at the bandwidth; none overlaps a GEMM, so the time adds to the layer's rather than joining the
GEMM's 2-norm of compute and memory. At a decode step that is the floors (4 × 3.1 µs a layer of Llama at the
defaults, 10 of Qwen3-30B-A3B); at a 4k-token prefill of Llama-3.1-8B on an H100 the bytes, ~0.7 GB a layer (~7 ms
a step, 50 MiB of each kernel's from L2). The norms and the activation work on every scheduled token of every rank
(the norms on the whole hidden state, which every TP rank holds; the activation on the rank's share of the MLP); a
Gated DeltaNet layer is counted as an attention layer (its own norms and gates are at least as many kernels).
Not counted: OLMo-2's post-norms (kvsim reads no OLMo config), Phi-MoE's unfused LayerNorms (counted as two fused
norms), Qwen2-MoE's shared-expert gate's sigmoid (fused into the add), the one-kernel ``moe_align_block_size`` of
small batches (under 1,024 routed tokens with at most 64 experts: counted as two), DeepSeek's routed scaling, and
torch.compile's fusions of these kernels with one another or with a GEMM (vLLM's compilation fusion passes).

Data parallelism (``serving.data_parallel_size`` D > 1, ``sim.serving.moe``): vLLM 0.33 runs a group's MoE layers
through a modular kernel whose prepare step (``MoEPrepareAndFinalizeNaiveDPEPModular``, fused_moe/prepare_finalize/
naive_dp_ep.py) all-gathers the hidden states with the top-k weights and ids each rank chose for its own tokens
(``MoERunner._apply_quant_method``: ``router.select_experts`` before ``forward_modular``), so on every rank the
experts' kernels (fused_moe/experts/triton_moe.py ``TritonExperts.apply``) run on the group's G tokens: the two
``moe_align_block_size`` kernels over its G × k ids, the activation over its whole G × k pairs' intermediate (each
pair's full expert width, expert parallel: the other ranks' pairs written as zeros; 1/(D × TP) of it with
``serving.enable_expert_parallel`` false), the FP8 quantization of that
activation's output and ``moe_sum`` over its G tokens' k outputs; the finalize step's reduce-scatter returns the
rank's own tokens. The top-k, the shared experts (their activation too), their add to the routed sum
(``MoERunner.forward``, after the combine) and the quantization of the experts' input (before the gather) stay on
the rank's own tokens. Those group kernels are ``ElementwiseCost.group``, priced at the group's tokens
(``sim.serving.moe.group_tokens``, as the GEMMs are); at D = 1 there is none.

L2: each kernel reads what the kernel just before it wrote (the norm its GEMM's output, the rotary embedding
qkv_proj's q and k, the activation gate_up_proj's output) and writes what the next one reads, and the GPU's L2 is
write-back: where those bytes fit in L2 they never reach DRAM within the kernel, and move at the L2's bandwidth
(``GPUSpec.cache_bandwidth``). A kernel whose such bytes (``ElementwiseKernel.cached_bytes_per_token`` × tokens)
exceed the L2 finds the share L2 / bytes of them there (the rest at the DRAM bandwidth); the fused norm's residual,
written a GEMM, an attention and another GEMM earlier, is read from DRAM. A GPU spec without ``l2_mib``: all DRAM.
The LLMServingSim bundles' dense.csv (RTX 4090 and RTX PRO 6000) time the norms at up to 2.4x their DRAM bound
(``tests/test_elementwise.py`` compares both). Their qk_norm row (Qwen3-32B, Qwen3-30B-A3B) is the mean of q_norm's
and k_norm's kernels at TP 1 (LLMServingSim's profiler divided their merged node by its two invocations): the two
floors here are 1.5-1.6x two such kernels at one token, as the other kernels' floors are, and at 2,048 tokens they
run near half DRAM's bandwidth, not the L2's (head_dim-wide rows, one small thread block each; not modelled); the
sums stay within 0.22-0.30 mean |log| (``tests/test_elementwise_families.py``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.model_shape import ModelSpec
from sim.serving.moe import FP32_BYTES, INDEX_BYTES, expert_width_split, fp8_bytes

# fused_add_rms_norm: reads the layer's input and the residual, writes the new residual and the normed input
NORM_ACCESSES = 4
# vLLM 0.33 experts/triton_moe.py TritonExperts.apply: block-FP8 experts with [128, 128] blocks run their SiLU gated
# activation and the w2 input's quantization as one kernel, ops.silu_and_mul_per_block_quant (vllm-project/vllm PR
# #42497; kept by #57984 for activations without a SwiGLU clamp), except with LoRA or DeepGEMM's E8M0 scales (kvsim
# prices the Triton experts, fused_moe.py, not DeepGEMM's)
FUSED_ACT_QUANT_BLOCK = (128, 128)


@dataclass(frozen=True)
class ElementwiseKernel:
    """Kernels of a layer alike in their L2 traffic: how many, and the bytes per token of each that the kernel
    before it wrote or that it writes (the L2 holds them while they fit)."""

    count: float  # (a mean over the layers where only some have them: an MoE model's routing)
    cached_bytes_per_token: float


@dataclass(frozen=True)
class ElementwiseCost:
    """One decoder layer's elementwise kernels on one rank: how many, their bytes per scheduled token, and those of
    the bytes the L2 can hold, per kernel (``cached``; empty: all at the DRAM bandwidth); ``group``: those a
    data-parallel group's MoE layers run on the group's tokens, per group token (None: every kernel on the rank's own)."""

    kernels: float  # (a mean over the layers: an MoE model's dense layers have no routing kernels)
    bytes_per_token: float
    cached: tuple[ElementwiseKernel, ...] = ()
    group: ElementwiseCost | None = None

    def layer_time(self, tokens: float, kernel_floor_s: float, bandwidth: float, l2_bytes: int | None = None,
                   l2_bandwidth: float = 0.0, group_tokens: float | None = None) -> float:
        """Seconds of one layer's elementwise kernels for ``tokens`` tokens of the rank's own and ``group_tokens`` of
        its data-parallel group's (None: ``tokens``) (``bandwidth``: the effective DRAM B/s; ``l2_bytes``,
        ``l2_bandwidth``: the GPU's L2 and its effective B/s, None: no L2 counted)."""
        if tokens <= 0:
            return 0.0
        seconds = self.kernels * kernel_floor_s + tokens * self.bytes_per_token / bandwidth
        if self.group is not None:
            seconds += self.group.layer_time(tokens if group_tokens is None else group_tokens, kernel_floor_s,
                                             bandwidth, l2_bytes, l2_bandwidth)
        if not l2_bytes or l2_bandwidth <= 0:
            return seconds
        for kernel in self.cached:
            held = tokens * kernel.cached_bytes_per_token
            if held > 0:  # the share of them the L2 holds moves at its bandwidth instead of DRAM's
                in_l2 = min(held, l2_bytes)
                seconds -= kernel.count * in_l2 * (1 / bandwidth - 1 / l2_bandwidth)
        return seconds

    def step_bytes(self, tokens: float, group_tokens: float) -> float:
        """Bytes one layer's kernels move for ``tokens`` of the rank's own tokens and ``group_tokens`` of its group's."""
        own = tokens * self.bytes_per_token
        return own if self.group is None else own + group_tokens * self.group.bytes_per_token


class _Kernels:
    """A layer's kernels as they are counted: how many, their bytes per token, and the L2's share of each's."""

    def __init__(self) -> None:
        self.kernels = 0.0
        self.bytes_per_token = 0.0
        self.cached: list[ElementwiseKernel] = []

    def add(self, count: float, bytes_each: float, cached_each: float) -> None:
        """``count`` kernels (a mean over the layers: may be fractional), each moving ``bytes_each`` a token, of which
        ``cached_each`` the kernel before it wrote or the next one reads (the L2 holds them while they fit)."""
        self.kernels += count
        self.bytes_per_token += count * bytes_each
        if cached_each > 0:
            self.cached.append(ElementwiseKernel(count, cached_each))

    def cost(self, group: _Kernels | None = None) -> ElementwiseCost:
        """These kernels' cost (``group``: those run on the data-parallel group's tokens, counted apart)."""
        group_cost = None if group is None or group is self else group.cost()
        return ElementwiseCost(self.kernels, self.bytes_per_token, tuple(self.cached), group_cost)


def elementwise_cost(model: ModelSpec, dtype_bytes: int, tensor_parallel_size: int, activation: bool = True,
                     data_parallel_size: int = 1, expert_parallel: bool = True) -> ElementwiseCost:
    """The elementwise kernels of one of ``model``'s layers on one of ``tensor_parallel_size`` ranks, the mean over
    its layers where they differ (an MoE model's dense layers) (``activation`` False: the norms, q/k norms and
    rotary embedding alone, what an MoE bundle's dense.csv times beside the projections, its experts' activation and
    routing being moe.csv's, and no FP8 quantization). With ``data_parallel_size`` D > 1 an MoE model's experts'
    kernels are the cost's ``group``, per token of the data-parallel group's (``expert_parallel``: the group's layout,
    ``sim.serving.moe``)."""
    tp, m, b = tensor_parallel_size, model, dtype_bytes
    layer = _Kernels()
    group = _Kernels() if data_parallel_size > 1 and m.is_moe else layer  # (D = 1: every kernel on the own tokens)
    _layer_norms(layer, m, b)
    if activation:
        _activations(layer, group, m, b, tp, data_parallel_size, expert_parallel)
    if m.position_encoding == "rope":
        if m.is_mla:  # the rotary part of each query head, and the one shared key part (replicated)
            rope = 2 * (m.num_attention_heads / tp + 1) * m.qk_rope_head_dim * b
        else:
            # a rank's query heads and its KV heads: one at least (vLLM replicates a KV head over the ranks past
            # the KV-head count, as ``RooflineCompute``'s KV heads)
            rope = 2 * (m.num_attention_heads / tp + max(1, m.num_kv_heads // tp)) * (m.rotary_dim or m.head_dim) * b
        layer.add(1, rope, rope)  # q and k in place, as the projection wrote them
    if m.is_mla:  # q_a_layernorm and kv_a_layernorm, read and written whole on every rank
        latent_norms = 1 + (m.q_lora_rank is not None)
        # (each reads the fused_qkv_a_proj output's part and writes it: the mean of the two's widths)
        each = 2 * ((m.q_lora_rank or 0) + m.kv_lora_rank) / latent_norms * b
        layer.add(latent_norms, each, each)
    if m.qk_norm:
        # q_norm and k_norm: each reads the rank's q (k) as qkv_proj wrote it and writes it for the rotary embedding
        # (RMSNorm over head_dim, vLLM qwen3.py Qwen3Attention; one KV head at least, as the rotary embedding's)
        qk = 2 * (m.num_attention_heads / tp + max(1, m.num_kv_heads // tp)) * m.head_dim * b
        layer.add(2, qk / 2, qk / 2)  # (the two kernels' mean)
    if activation:
        if m.is_moe:
            moe_kernels(layer, m, b, tp, group=group)
        if m.weight_quantization == "fp8":
            fp8_quant_kernels(layer, m, b, tp, group, data_parallel_size, expert_parallel)
    return layer.cost(group)


def _activations(layer: _Kernels, group: _Kernels, m: ModelSpec, b: int, tp: int, dp: int, ep: bool) -> None:
    """The MLPs' activations, each reading its GEMM's output and writing the product (all of it the L2's): the dense
    layers' (a gated MLP's SiluAndMul reads gate and up, a plain one's activation its one output) and, in every MoE
    layer, the shared experts' own SiluAndMul (their MLP is a separate module: qwen2_moe.py Qwen2MoeMLP,
    deepseek_v2.py DeepseekV2MLP), on the rank's own tokens at the TP-split widths; and the routed experts' over each
    of a token's k pairs (``group``: the data-parallel group's tokens at D > 1, each pair at the whole expert width
    expert parallel (``ep``), else at 1/(D × TP) of it; ``TritonExperts.apply``'s activation takes the whole G × k-row
    intermediate, expert parallel the pairs of the other ranks' experts as the GEMM wrote them, zeros)."""
    share = m.moe_layers / m.num_layers
    if share < 1:
        dense = ((2 if m.gated_mlp else 1) + 1) * m.intermediate_size / tp * b
        layer.add(1 - share, dense, dense)
    if share:
        _moe_activations(layer, group, m, b, tp, dp, share, ep)


def _moe_activations(layer: _Kernels, group: _Kernels, m: ModelSpec, b: int, tp: int, dp: int, share: float,
                     ep: bool = True) -> None:
    """An MoE layer's activations (``share``: a mean over the layers): the shared experts' SiluAndMul, then the
    routed experts' (``_activations``)."""
    if m.shared_expert_intermediate_size:
        shared = 3 * m.shared_expert_intermediate_size / tp * b
        layer.add(share, shared, shared)
    width = m.num_experts_per_tok * m.moe_intermediate_size / expert_width_split(tp, dp, ep)
    if fused_expert_act_quant(m):  # reads gate and up, writes the product in FP8 and its scales (w2's input)
        routed = 2 * width * b + fp8_bytes(width, m.weight_block_size[1])
    else:
        routed = 3 * width * b
    group.add(share, routed, routed)


def fused_expert_act_quant(m: ModelSpec) -> bool:
    """Whether vLLM quantizes the routed experts' activation in the activation's kernel (``FUSED_ACT_QUANT_BLOCK``):
    block-FP8 experts of 128 x 128 blocks (every MoE model kvsim reads is SiLU-gated but gpt-oss, which is MXFP4)."""
    return m.weight_quantization == "fp8" and m.weight_block_size == FUSED_ACT_QUANT_BLOCK


def _layer_norms(layer: _Kernels, m: ModelSpec, b: int) -> None:
    """The layer's norms on the hidden state, which every TP rank holds whole (``ModelSpec.norms_per_layer``)."""
    h = m.hidden_size
    if m.norms_per_layer == 1:
        # Phi's parallel block (phi.py PhiLayer): input_layernorm reads the layer's input (the sum the layer before
        # wrote) and writes it normed (what qkv_proj and fc1 read), both the L2's; then attn_outputs +
        # feed_forward_hidden_states + residual, one kernel as torch.compile fuses the two adds: it reads fc2's
        # output (the L2's), the attention's (o_proj wrote it before the MLP ran) and the residual, and writes the sum
        layer.add(1, 2 * h * b, 2 * h * b)
        layer.add(1, 4 * h * b, 2 * h * b)
        return
    # fused_add_rms_norm: its input (the GEMM before it wrote it) and both writes are the L2's; the residual is DRAM's
    layer.add(2, NORM_ACCESSES * h * b, (NORM_ACCESSES - 1) * h * b)
    if m.norms_per_layer == 4:
        # Gemma's post_attention_layernorm and post_feedforward_layernorm (gemma2.py / gemma3.py decoder layers): a
        # plain RMSNorm on o_proj's (down_proj's) output as the GEMM wrote it, written for the next fused norm
        layer.add(2, 2 * h * b, 2 * h * b)


def moe_block_cost(model: ModelSpec, dtype_bytes: int, tensor_parallel_size: int) -> ElementwiseCost:
    """One MoE layer's own elementwise kernels on one rank: its activations (the shared experts' and the routed
    copies') and ``moe_kernels``, what a bundle's moe.csv times beside the router's and the experts' GEMMs."""
    layer, m = _Kernels(), model
    _moe_activations(layer, layer, m, dtype_bytes, tensor_parallel_size, 1, 1.0)
    moe_kernels(layer, m, dtype_bytes, tensor_parallel_size, share=1.0)
    return layer.cost()


def moe_kernels(layer: _Kernels, m: ModelSpec, b: int, tp: int, share: float | None = None,
                group: _Kernels | None = None) -> None:
    """An MoE layer's kernels beside its GEMMs (vLLM fused_moe: ``FusedMoE`` routing, then ``fused_experts``), all
    on what the kernel before wrote or the next one reads: the top-k over the router's logits (``topk_softmax``, or
    ``grouped_topk`` for a sigmoid router with a score-correction bias), ``moe_align_block_size``'s two kernels (count
    and align the routed copies by expert, then sort them), ``moe_sum`` (the k experts' outputs to one: GEMM2 writes
    them whole-width on every TP rank; none at k = 1, where GEMM2 writes the output) and, with shared experts, their
    output's add to the routed sum. Each MoE layer's: a mean over the layers. ``group``: where the kernels that run on
    a data-parallel group's tokens go (align, sort, ``moe_sum``; None: ``layer``)."""
    share = m.moe_layers / m.num_layers if share is None else share  # (None: the mean over the layers)
    group = layer if group is None else group
    k, h = m.num_experts_per_tok, m.hidden_size
    logit = FP32_BYTES if m.fp32_parameters else b  # (GLM-4.5's and MiniMax-M2's fp32 routers write fp32 logits)
    topk = m.num_experts * logit + k * (FP32_BYTES + INDEX_BYTES)  # reads the logits, writes k weights and k ids
    layer.add(share, topk, topk)
    # the align kernel reads the k ids, the sort kernel reads them and writes each copy's slot (the mean of the two)
    group.add(2 * share, 3 * k * INDEX_BYTES / 2, 3 * k * INDEX_BYTES / 2)
    if k > 1:
        group.add(share, (k + 1) * h * b, (k + 1) * h * b)
    if m.shared_expert_intermediate_size:
        # reads the routed sum (the L2's) and the shared experts' output (computed before the routed experts: DRAM's),
        # writes the layer's output (qwen2_moe.py / deepseek_v2.py: final_hidden_states + shared_output)
        layer.add(share, 3 * h * b, 2 * h * b)


def fp8_quant_kernels(layer: _Kernels, m: ModelSpec, b: int, tp: int, group: _Kernels | None = None,
                      dp: int = 1, ep: bool = True) -> None:
    """An FP8 checkpoint's activation quantization: before each FP8 GEMM vLLM quantizes its input on the fly
    (activation_scheme dynamic; ``Fp8LinearMethod``: ``per_token_group_quant_fp8`` with a weight_block_size, one fp32
    scale per token and block-column group; ``Fp8MoEMethod``: the experts' input once a token and the activation's
    output, k copies a token), reading it in the model dtype as the kernel before wrote it and writing it in FP8 for
    the GEMM. A per-tensor checkpoint's dynamic scale (a max pass more) and static scales are not told apart: one
    kernel each. The attention's inputs on every layer (a Gated DeltaNet layer counted as attention); MLA's kv_b_proj,
    whose decode runs absorbed in the model dtype, not counted. The routers are not FP8. ``group``: where the
    experts' w2 input goes, which a data-parallel group (``dp`` > 1) quantizes over its tokens' pairs at the whole
    expert width expert parallel (``ep``), else at 1/(D × TP) of it (None: ``layer``); the w13 input is quantized
    before the gather, on the rank's own tokens. Block-FP8
    experts of 128 x 128 blocks quantize w2's input in their activation's kernel (``fused_expert_act_quant``); the
    dense layers' and the shared experts' down_proj inputs keep their own kernel (their SiluAndMul and QuantFP8 are two
    ops; a fusion of the two is torch.compile's, vllm/config/vllm.py ``enable_act_fusion``, not counted)."""
    block = m.weight_block_size[1] if m.weight_block_size else None
    h, share = m.hidden_size, m.moe_layers / m.num_layers
    group = layer if group is None else group
    if m.is_mla:  # fused_qkv_a_proj (or q_proj and kv_a_proj_with_mqa), q_b_proj, o_proj; the indexer's wq_b
        widths = [h, h if m.q_lora_rank is None else m.q_lora_rank, m.num_attention_heads * m.v_head_dim / tp]
        widths += [m.q_lora_rank] if m.is_sparse_attention else []
    else:  # qkv_proj, o_proj
        widths = [h, m.num_attention_heads * m.head_dim / tp]
    inputs = [(1.0, width, layer) for width in widths]
    if share < 1:  # the dense layers' gate_up_proj and down_proj
        inputs += [(1 - share, h, layer), (1 - share, m.intermediate_size / tp, layer)]
    if share:  # the experts' w13 and w2 inputs (w2's in the activation's kernel where fused), the shared experts'
        inputs += [(share, h, layer)]
        if not fused_expert_act_quant(m):
            routed = m.num_experts_per_tok * m.moe_intermediate_size / expert_width_split(tp, dp, ep)
            inputs += [(share, routed, group)]
        if m.shared_expert_intermediate_size:  # (gate_up's and down's: their SiluAndMul is a kernel apart)
            inputs += [(share, h, layer), (share, m.shared_expert_intermediate_size / tp, layer)]
    for count, width, kernels in inputs:
        moved = width * b + fp8_bytes(width, block)
        kernels.add(count, moved, moved)
