"""The compute-model interface: the time of one forward step of a batch, and the roofline model.

A step is described by ``StepShape`` aggregates so the per-step cost is O(1) whatever
the batch size; every ``ComputeModel`` maps a shape to seconds. ``RooflineCompute`` derives
times from model and GPU specs (the default); the profiled families (``sim.serving.vidur_compute``,
``sim.serving.llmservingsim_compute``) interpolate measured tables, and ``sim.serving.compute_backend``
selects one from the config. Every model adds the tensor-parallel collectives of the step
(``sim.serving.collectives``) and runs the LM head and sampler on every scheduled sequence:
vLLM v1 computes logits at the last scheduled token of each request, partial prefill chunks
included, and discards the tokens those sample (``gpu_model_runner``: ``logits_indices =
query_start_loc[1:] - 1``).

Roofline per operator group (linear layers, attention, LM head), per layer:
  C = FLOPs / (peak × efficiency),  M = bytes / (bandwidth × bandwidth_efficiency),
  t = floor + sqrt(C² + M²),
with ``flops_efficiency`` for the GEMMs and ``attention_efficiency`` for attention, and as floor the group's
kernels' (``sim.serving.kernel_floors``: each GEMM kernel's, the attention call's; none in the plain roofline).
The plain roofline takes max(C, M); near the ridge point real kernels overlap compute
and memory traffic only partly, and the 2-norm (equal to the max at either extreme, at
most √2 × it at the ridge) models that without another parameter.
FLOPs: linear layers 2 × parameters × tokens (once); attention 4 × heads × head_dim ×
(query, key) pairs, causal within a prefill chunk. Multi-head latent attention (DeepSeek, ``ModelSpec.is_mla``)
as vLLM runs it: decode pairs 2 × heads × (latent + kv_lora_rank) (attention over the cached latent after
weight absorption), prefill pairs 2 × heads × (qk_nope + qk_rope + v) (per-head k and v up-projected), plus
kv_b_proj over each prefill chunk's cached context; the q_a and kv_a projections are whole on every TP rank.
Mixture-of-experts layers (``ModelSpec.num_experts``): the linear group is the attention
projections, the router (replicated on every TP rank: vLLM's ``ReplicatedLinear`` gate) and the
experts; FLOPs count each token's ``num_experts_per_tok`` experts, each expert's rows padded to the fused-MoE
kernel's block (``sim.serving.moe.FusedExperts``), weight bytes the distinct experts
the step's tokens touch, their uniform-routing expectation, and activation bytes as the experts' two GEMMs move them,
every (token, expert) pair's outputs on every rank (``sim.serving.moe``). Experts are
sharded over TP ranks as vLLM's ``FusedMoE`` does without expert parallelism (each expert's
width / TP on every rank), and with ``data_parallel_size`` D > 1 over the D × TP GPUs of a
data-parallel group (``sim.serving.moe``: the group's tokens, this GPU's 1/(D × TP) of the token-expert
pairs and of the expert weights they touch; whole experts or width slices as ``expert_parallel`` says).
``step_time``'s ``share`` gives a lockstep step's own padded
tokens and the group's (``sim.serving.data_parallel``); without it the group is D ranks like this one.
"""

from __future__ import annotations

import math
from dataclasses import KW_ONLY, dataclass

import numpy as np

from sim.errors import ConfigError
from sim.jit import njit
from sim.model_shape import ModelSpec
from sim.serving.attention_waves import attention_waves
from sim.serving.collectives import TensorParallelComm
from sim.serving.elementwise import elementwise_cost
from sim.serving.gdn_compute import gated_delta_net_cost
from sim.serving.kernel_floors import ROUTED_EXPERT_KERNELS, KernelFloors, attention_projection_kernels, mlp_kernels
from sim.serving.moe import DataParallelShare, FusedExperts, group_tokens, rank_experts
from sim.serving.step_shape import StepShape, window_kv_tokens, window_sliding_kv_tokens
from sim.serving.varlen_attention import varlen_attention
from sim.specs import GPUSpec

DECODE_FIXED_MEMO = 1 << 16  # steps' fixed parts kept (per batch size and share) before a memo starts over


def _combine(compute_s: float, memory_s: float) -> float:
    return math.hypot(compute_s, memory_s)


@dataclass
class RooflineCompute:
    """Step time from model shape and GPU peak FLOP/s and memory bandwidth."""

    model: ModelSpec
    gpu: GPUSpec
    dtype_bytes: int
    kv_dtype_bytes: int
    tensor_parallel_size: int = 1
    _: KW_ONLY  # the rest by name; the two efficiencies required: a run's are compute.*'s (roofline_compute)
    flops_efficiency: float
    bandwidth_efficiency: float
    comm: TensorParallelComm | None = None  # TP collectives of a step (None: no communication)
    data_parallel_size: int = 1  # instances whose GPUs share a mixture of experts' MoE layers
    floors: KernelFloors = KernelFloors()  # per-kernel GPU time floors (sim.serving.kernel_floors; none: plain)
    attention_efficiency: float | None = None  # attention's share of the FLOP peak (None: flops_efficiency)
    graph_tokens: int = 0  # the largest step that replays a CUDA graph (0: none; sim.serving.varlen_attention)
    name: str = "roofline"
    # a data-parallel group's experts whole on each GPU (vLLM's enable_expert_parallel), else split by width over
    # its D x TP GPUs (sim.serving.moe)
    expert_parallel: bool = True

    def __post_init__(self) -> None:
        m, tp = self.model, self.tensor_parallel_size
        if self.attention_efficiency is None:
            self.attention_efficiency = self.flops_efficiency
        if not all(0 < e <= 1 for e in (self.flops_efficiency, self.bandwidth_efficiency, self.attention_efficiency)):
            raise ConfigError("compute.flops_efficiency, bandwidth_efficiency and attention_efficiency must be in "
                              "(0, 1]")
        # q, k, v, o projections (MLA: q_a/q_b, kv_a, kv_b, o) split over TP and the MLP (gate, up, down; a plain
        # MLP up, down) of one layer; MLA's q_a and kv_a projections are whole on every rank (``replicated_params``)
        self.replicated_params = m.replicated_attention_parameters
        attn_params = m.attention_parameters - self.replicated_params
        self.layer_params = attn_params + m.dense_mlp_parameters
        self.peak = self.gpu.peak_flops * self.flops_efficiency
        self.attention_peak = self.gpu.peak_flops * self.attention_efficiency
        # kernel floors (sim.serving.kernel_floors): each GEMM of a dense and of an MoE layer, the LM head's and
        # each layer's attention call
        projections = attention_projection_kernels(m)
        self.dense_floor = (projections + mlp_kernels(m, False)) * self.floors.gemm_s
        self.moe_floor = (projections + mlp_kernels(m, True)) * self.floors.gemm_s
        # An FP8 checkpoint (``ModelSpec.weight_quantization``): its linear weights are read at
        # ``linear_weight_bytes`` a weight, and its GEMMs (W8A8, activations quantized per token group on the fly:
        # activation_scheme dynamic) run at the GPU's FP8 peak where it has one (profiles/gpus.yaml
        # dense_fp8_tflops), else at the BF16 peak (vLLM's Marlin weight-only FP8 on GPUs without FP8 tensor cores)
        self.linear_bytes = m.linear_weight_bytes(self.dtype_bytes)
        fp8_peak = self.gpu.fp8_peak_flops if m.weight_quantization == "fp8" else None
        self.linear_peak = self.peak if fp8_peak is None else fp8_peak * self.flops_efficiency
        self.bandwidth = self.gpu.memory_bandwidth * self.bandwidth_efficiency
        self.attn_flops_per_pair = 4 * m.num_attention_heads * m.head_dim / tp
        # a hybrid model's sliding-window layers attend within their window (``StepShape.sliding``), the rest to
        # everything; a model whose every layer slides is served within its window (``ModelSpec.longest_request``)
        self.sliding_window = m.sliding_window if m.is_hybrid_attention else 0
        self.sliding_layers = m.sliding_layers if m.is_hybrid_attention else 0
        self.full_layers = m.attention_layers - self.sliding_layers
        # Gated DeltaNet layers (Qwen3-Next): their own projections and token mixer (sim.serving.gdn_compute)
        self.gdn = gated_delta_net_cost(m, self.dtype_bytes, tp)
        self._gdn_decode_memo: dict[int, float] = {}
        self.prefill_attn_flops_per_pair = self.attn_flops_per_pair
        self.context_flops_per_token = 0.0
        if m.is_mla:
            # vLLM's MLA (v1/attention/backends/mla/common.py): decode absorbs W_UK into q and attends over the
            # latent, MQA-like with QK width kv_lora_rank + rope (head_dim here) and V width kv_lora_rank; prefill
            # up-projects the latent with kv_b_proj to per-head k (nope + rope) and v and runs MHA over them, the
            # cached context's latent too (its chunks through kv_b_proj: ``context_flops_per_token``).
            # kv_b_proj's FLOPs on each new token (prefill) or absorbed per decode token count with the projections.
            heads = m.num_attention_heads / tp
            self.attn_flops_per_pair = 2 * heads * (m.head_dim + m.kv_lora_rank)
            self.prefill_attn_flops_per_pair = 2 * heads * (m.qk_nope_head_dim + m.qk_rope_head_dim + m.v_head_dim)
            self.context_flops_per_token = 2 * m.kv_b_parameters / tp
        self.kv_bytes_per_token_layer = m.kv_bytes_per_token(self.kv_dtype_bytes, tp) // m.attention_layers
        # the attention's thread blocks (sim.serving.attention_waves) and FlashAttention's one call over a step that
        # mixes prefills and decodes (sim.serving.varlen_attention)
        self.waves = attention_waves(m, self.gpu, tp, self.floors.attention_tile_s)
        kv_heads = max(1, m.num_kv_heads // tp)
        self.varlen = (None if self.waves is None else
                       varlen_attention(m, self.gpu, tp, self.graph_tokens, self.kv_bytes_per_token_layer / kv_heads))
        # DeepSeek sparse attention (``ModelSpec.is_sparse_attention``): the indexer scores every cached token for
        # every query (index_n_heads × index_head_dim multiply-adds a (query, key) pair, all heads on every rank:
        # deepseek_v2.py Indexer is replicated) reading each token's indexer key; the attention attends to at most
        # index_topk tokens a query, prefill and decode alike in the absorbed MQA form over the latent (vLLM
        # v1/attention/backends/mla/flashmla_sparse.py forward_mqa: "MQA 576/512 approach for both prefill and
        # decode"), so no kv_b_proj over the context either.
        self.index_topk = m.index_topk
        self.index_flops_per_pair = 0.0
        self.index_bytes_per_token_layer = m.indexer_cache_bytes
        self.latent_bytes_per_token_layer = self.kv_bytes_per_token_layer - self.index_bytes_per_token_layer
        if m.is_sparse_attention:
            self.prefill_attn_flops_per_pair = self.attn_flops_per_pair
            self.context_flops_per_token = 0.0
            self.index_flops_per_pair = 2 * m.index_n_heads * m.index_head_dim
        # the indexer's wk and weights_proj stay in the model dtype in an FP8 checkpoint (ModelSpec)
        replicated_plain = m.indexer_bf16_parameters
        self.layer_weight_bytes = self.layer_params * self.linear_bytes / tp + self.replicated_params * self.linear_bytes
        if replicated_plain:
            self.layer_weight_bytes += replicated_plain * (self.dtype_bytes - self.linear_bytes)
        # the MLP's input and its intermediate_size-wide activation, written and read (gated or not)
        self.act_bytes_per_token = 2 * (m.hidden_size + m.intermediate_size) * self.dtype_bytes
        # norms, rotary, activation (in series); a data-parallel group's experts' kernels on the group's tokens
        self.elementwise = elementwise_cost(m, self.dtype_bytes, tp, data_parallel_size=self.data_parallel_size,
                                            expert_parallel=self.expert_parallel)
        self._decode_fixed_memo: dict[int | tuple[int, int, int, int], tuple[float, float]] = {}
        self._step_fixed_memo: dict[tuple[int, int, int], tuple[float, float]] = {}  # (``_step_fixed``)
        self._dense_args: tuple[float, ...] | None = None  # ``_dense_decode_window``'s constants, once asked
        self._prefill_memo: dict[tuple, float] = {}  # (``step_time``)
        if m.is_moe:
            # per MoE layer and GPU: projections, shared experts and routed experts split over TP (vLLM builds the
            # shared experts as a dense MLP: qwen2_moe.py Qwen2MoeMLP, deepseek_v2.py DeepseekV2MLP), the router,
            # Qwen2-MoE's shared-expert gate and MLA's q_a/kv_a projections whole on every rank
            router_params = m.hidden_size * m.num_experts
            gate = m.hidden_size if m.shared_expert_gate else 0
            shared = m.shared_expert_parameters - gate  # run by every token, read every step
            whole = router_params + self.replicated_params + gate
            self.moe_own_flops_per_token = 2 * (attn_params + shared) / tp + 2 * whole  # per token of its own
            self.expert_flops_per_token = 2 * m.num_experts_per_tok * m.expert_parameters / tp  # per routed token
            self.expert_flops_per_row = 2 * m.expert_parameters / tp  # per padded row (sim.serving.moe)
            self.moe_flops_per_token = self.moe_own_flops_per_token + self.expert_flops_per_token
            self.moe_fixed_bytes = ((attn_params + shared) / tp + whole) * self.dtype_bytes
            if m.weight_quantization is not None:  # the router and the shared-expert gate stay in the model dtype
                self.moe_fixed_bytes = (((attn_params + shared) / tp + self.replicated_params) * self.linear_bytes
                                        + (router_params + gate) * self.dtype_bytes)
            if replicated_plain:
                self.moe_fixed_bytes += replicated_plain * (self.dtype_bytes - self.linear_bytes)
            self.attn_params, self.router_params = attn_params, router_params
            self.expert_bytes = m.expert_parameters * m.expert_weight_bytes(self.dtype_bytes) / tp  # MXFP4: 4.25 bits
            # the shared experts' MLP's activations on a rank's own tokens (as a dense MLP's); the routed experts' GEMMs'
            # on the group's, and their padded rows (sim.serving.moe.FusedExperts); per own token together, the group
            # D ranks of one token each as moe_layer_time takes it without a share (utilization: at D > 1 each rank
            # writes every group token's pairs, so D = 1's count undercounted the bytes it priced)
            self.fused = FusedExperts(m, self.dtype_bytes, tp, self.data_parallel_size, self.expert_parallel)
            shared_width = m.shared_expert_intermediate_size
            self.shared_act_bytes_per_token = 2 * (m.hidden_size + shared_width) * self.dtype_bytes / tp if \
                shared_width else 0.0
            self.moe_act_bytes_per_token = (self.shared_act_bytes_per_token
                                        + self.fused.activation_bytes(self.data_parallel_size))

    def dense_layer_time(self, tokens: int, extra: float = 0.0, extra_kernels: int = 0) -> float:
        """One dense layer's projections and MLP for ``tokens`` tokens (``extra``: more weights per rank, as a GDN
        layer's projections have over the attention's, in ``extra_kernels`` more GEMMs)."""
        flops = (2 * self.layer_params * tokens / self.tensor_parallel_size + 2 * self.replicated_params * tokens
                 + 2 * extra * tokens)
        traffic = (self.layer_weight_bytes + extra * self.linear_bytes
                   + tokens * self.act_bytes_per_token / self.tensor_parallel_size)
        floor = self.dense_floor + extra_kernels * self.floors.gemm_s
        return floor + _combine(flops / self.linear_peak, traffic / self.bandwidth)

    def moe_weight_bytes(self, group: float) -> float:
        """Weights one MoE layer reads in a step whose data-parallel group routes ``group`` tokens (``group_tokens``;
        at D = 1 the step's): projections, router and this GPU's share of the expected distinct experts they touch
        (``rank_experts``)."""
        return self.moe_fixed_bytes + self.expert_bytes * rank_experts(group, self.model, self.data_parallel_size)

    def moe_layer_time(self, tokens: int, share: DataParallelShare | None = None, extra: float = 0.0,
                       extra_kernels: int = 0) -> float:
        """One MoE layer's projections and router for ``tokens`` tokens, and this GPU's share of the experts' work
        on the group's tokens (``share``; None: D ranks of ``tokens`` each; ``extra`` as ``dense_layer_time``'s)."""
        group = group_tokens(tokens, self.data_parallel_size, share)
        flops = (self.moe_own_flops_per_token * tokens + self.expert_flops_per_row * self.fused.rows(group)
                 + 2 * extra * tokens)
        traffic = (self.moe_weight_bytes(group) + extra * self.linear_bytes
                   + tokens * self.shared_act_bytes_per_token + self.fused.activation_bytes(group))
        floor = self.moe_floor + extra_kernels * self.floors.gemm_s
        return floor + _combine(flops / self.linear_peak, traffic / self.bandwidth)

    def moe_block_time(self, tokens: int, experts: float) -> float:
        """The router and ``experts`` distinct experts alone for ``tokens`` tokens (their rows padded over those
        experts: ``sim.serving.moe.block_expert_rows``): what a bundle's moe.csv measures (``--check-calibration``)."""
        rows = self.fused.block_rows(tokens, experts)
        flops = self.expert_flops_per_row * rows + 2 * self.router_params * tokens
        traffic = (self.router_params * self.dtype_bytes + experts * self.expert_bytes
                   + tokens * self.shared_act_bytes_per_token + self.fused.activation_bytes(tokens, 1))
        floor = ROUTED_EXPERT_KERNELS * self.floors.gemm_s
        return floor + _combine(flops / self.linear_peak, traffic / self.bandwidth)

    def projections_time(self, tokens: int) -> float:
        """The q/k/v/o projections alone for ``tokens`` tokens: a bundle's dense.csv linear operators for an MoE
        model (``--check-calibration``'s reference for them)."""
        tp = self.tensor_parallel_size
        flops = 2 * self.attn_params * tokens / tp
        traffic = (self.attn_params * self.linear_bytes + 2 * tokens * self.model.hidden_size * self.dtype_bytes) / tp
        kernels = attention_projection_kernels(self.model)
        return kernels * self.floors.gemm_s + _combine(flops / self.linear_peak, traffic / self.bandwidth)

    def linear_layer_time(self, tokens: int, share: DataParallelShare | None = None, extra: float = 0.0,
                          extra_kernels: int = 0) -> float:
        """One layer's projections and MLP for ``tokens`` tokens; the mean over the layers when some are MoE
        (``extra``: more projection weights per rank in ``extra_kernels`` more GEMMs, a GDN layer's)."""
        m = self.model
        if not m.is_moe:
            return self.dense_layer_time(tokens, extra, extra_kernels)
        dense_layers = m.num_layers - m.moe_layers
        dense = self.dense_layer_time(tokens, extra, extra_kernels) if dense_layers else 0.0
        moe = self.moe_layer_time(tokens, share, extra, extra_kernels)
        return (dense_layers * dense + m.moe_layers * moe) / m.num_layers

    def gdn_layers_time(self, tokens: int, shape: StepShape, share: DataParallelShare | None = None) -> float:
        """Every Gated DeltaNet layer's time for a step: projections and MLP, and the token mixer over the states."""
        gdn = self.gdn
        mixer = gdn.mixer_time(shape.prefill_tokens, shape.prefill_seqs, shape.decode_seqs, self.peak, self.bandwidth)
        # its projections: in_proj_qkvz, in_proj_ba and out_proj (qwen3_next.py), one GEMM more than q/k/v/o's two
        return gdn.layers * (self.linear_layer_time(tokens, share, gdn.projection_delta, 1) + mixer
                             + self.elementwise_time(tokens, share))

    def elementwise_time(self, tokens: int, share: DataParallelShare | None = None) -> float:
        """One layer's elementwise kernels (``sim.serving.elementwise``) for ``tokens`` tokens, those a data-parallel
        group's MoE layers run on its tokens at the group's (``share``; None: D ranks of ``tokens`` each)."""
        return self.elementwise.layer_time(tokens, self.floors.gemm_s, self.bandwidth, self.gpu.l2_bytes,
                                           self.gpu.cache_bandwidth * self.bandwidth_efficiency,
                                           group_tokens(tokens, self.data_parallel_size, share))

    def attention_flops(self, prefill_pairs: float, decode_kv_tokens: float, prefill_context: float,
                        prefill_tokens: float | None = None, decode_seqs: float | None = None) -> float:
        """One layer's attention FLOPs: (query, key) pairs of prefill and of decode, and with MLA the up-projection
        of the prefill chunks' cached context (``prefill_context``: Σ KV tokens before the chunks). With sparse
        attention the indexer's pairs are all of them and the attention's ``selected_pairs`` (the queries:
        ``prefill_tokens``, ``decode_seqs``; None: not bounded)."""
        if self.index_topk is not None:
            selected = (self.selected_pairs(prefill_pairs, prefill_tokens)
                        + self.selected_pairs(decode_kv_tokens, decode_seqs))
            return self.attn_flops_per_pair * selected + self.index_flops_per_pair * (prefill_pairs + decode_kv_tokens)
        if not self.model.is_mla:
            return self.attn_flops_per_pair * (prefill_pairs + decode_kv_tokens)
        return (self.prefill_attn_flops_per_pair * prefill_pairs + self.attn_flops_per_pair * decode_kv_tokens
                + self.context_flops_per_token * prefill_context)

    def selected_pairs(self, pairs: float, queries: float | None) -> float:
        """The (query, key) pairs sparse attention computes of ``pairs`` over ``queries`` queries: each query's
        keys up to index_topk. From the step's aggregates, min(pairs, queries × index_topk): exact when every
        query's context is within index_topk or every one beyond it, an upper bound otherwise (Σ min(k_i, top-k)
        ≤ min(Σ k_i, n × top-k)); e.g. an 8,192-token prompt prefilled at once: 16.8M pairs for 14.7M."""
        if self.index_topk is None or queries is None:
            return pairs
        return min(pairs, queries * self.index_topk)

    def attention_terms(self, shape: StepShape) -> tuple[float, float, float, float]:
        """One layer's attention as the roofline prices it: FLOP seconds at the attention peak, its thread blocks
        (``sim.serving.attention_waves``: tiles that pay the tile time, the longest tile's FLOPs; 0, 0 where a step
        is its FLOPs alone) and KV byte seconds at the bandwidth."""
        varlen = self.varlen is not None and self.varlen.walks_unsplit(shape)
        if varlen:  # decodes beside a prefill chunk in FlashAttention's one call (sim.serving.varlen_attention)
            flops = (self.attention_flops(shape.prefill_pairs, 0, shape.prefill_context)
                     + self.varlen.decode_flops(shape, self.attn_flops_per_pair))
            kv_bytes = self.kv_bytes_per_token_layer * (shape.prefill_kv_tokens + self.varlen.decode_kv_reads(shape))
        else:
            flops = self.attention_flops(shape.prefill_pairs, shape.decode_kv_tokens, shape.prefill_context,
                                         shape.prefill_tokens, shape.decode_seqs)
            if self.index_topk is None:
                kv_bytes = self.kv_bytes_per_token_layer * (shape.prefill_kv_tokens + shape.decode_kv_tokens
                                                            + shape.decode_seqs)
            else:  # the indexer reads every cached key; a decode's attention its top-k latents (a prefill: the context)
                selected = self.selected_pairs(shape.decode_kv_tokens, shape.decode_seqs)
                kv_bytes = (self.index_bytes_per_token_layer * (shape.prefill_kv_tokens + shape.decode_kv_tokens
                                                                + shape.decode_seqs)
                            + self.latent_bytes_per_token_layer * (shape.prefill_kv_tokens + selected
                                                                   + shape.decode_seqs))
        tiles = walk = 0.0
        if self.waves is not None and shape.prefill_seqs:
            tiles = self.waves.prefill_tiles(shape)
            walk = self.waves.walk_flops(shape.prefill_kv_max, self.prefill_attn_flops_per_pair)
            if varlen:
                tiles += self.varlen.decode_blocks(shape)
                walk = max(walk, self.waves.walk_flops(shape.decode_kv_max, self.attn_flops_per_pair))
        return flops / self.attention_peak, tiles, walk, kv_bytes / self.bandwidth

    def attention_layer_time(self, shape: StepShape) -> float:
        if shape.prefill_pairs + shape.decode_kv_tokens == 0:
            return 0.0
        flops_s, tiles, walk, bytes_s = self.attention_terms(shape)
        compute = self.waves.compute_seconds(flops_s, tiles, walk, self.attention_peak) if walk else flops_s
        return self.floors.attention_s + _combine(compute, bytes_s)

    def lm_head_time(self, seqs: int) -> float:
        if seqs == 0:
            return 0.0
        m, tp = self.model, self.tensor_parallel_size
        flops = 2 * m.vocab_size * m.hidden_size * seqs / tp
        traffic = m.vocab_size * m.hidden_size * self.dtype_bytes / tp
        return self.floors.gemm_s + _combine(flops / self.peak, traffic / self.bandwidth)

    def comm_time(self, tokens: int, logit_rows: int, share: DataParallelShare | None = None) -> float:
        return 0.0 if self.comm is None else self.comm.step_time(tokens, logit_rows, share)

    def step_time(self, shape: StepShape, share: DataParallelShare | None = None) -> float:
        if shape.prefill_seqs != 1 or shape.decode_seqs or shape.sliding is not None:
            return self._step_time(shape, share)
        # one prompt's chunk alone (most steps of a PD prefill instance, and prompt lengths recur) is a pure function
        # of the aggregates it reads and its share: kept (cleared when full, which changes no answer)
        key = (shape.prefill_seqs, shape.prefill_tokens, shape.prefill_pairs, shape.prefill_kv_tokens,
               shape.prefill_chunk_sq, shape.prefill_chunk_max, shape.prefill_kv_max, shape.prefill_row_blocks,
               None if share is None else share.priced)
        memo = self._prefill_memo
        seconds = memo.get(key)
        if seconds is None:
            if len(memo) >= DECODE_FIXED_MEMO:
                memo.clear()
            seconds = memo[key] = self._step_time(shape, share)
        return seconds

    def _step_time(self, shape: StepShape, share: DataParallelShare | None) -> float:
        tokens = shape.tokens
        if tokens == 0:
            return 0.0
        if share is not None:
            tokens = share.tokens  # padded: the layers run on them all
        rows = shape.logit_rows
        linear, lm_head = self._step_fixed(tokens, rows, share)
        if self.gdn is not None:  # attention layers, then the Gated DeltaNet ones
            layers = (self.full_layers * (linear + self.attention_layer_time(shape))
                      + self.gdn_layers_time(tokens, shape, share))
        elif shape.sliding is None:
            layers = self.model.num_layers * (linear + self.attention_layer_time(shape))
        else:
            layers = (self.full_layers * (linear + self.attention_layer_time(shape))
                      + self.sliding_layers * (linear + self.attention_layer_time(shape.sliding)))
        return layers + lm_head + self.comm_time(tokens, rows, share)

    def _step_fixed(self, tokens: int, rows: int, share: DataParallelShare | None) -> tuple[float, float]:
        """A step's linear layers with their elementwise kernels, and LM head: pure functions of (tokens, rows, share),
        kept (every step asks; cleared when full, which changes no answer)."""
        memo = self._step_fixed_memo
        key = (tokens, rows, -1) if share is None else (tokens, rows, share.group_tokens)
        fixed = memo.get(key)
        if fixed is None:
            if len(memo) >= DECODE_FIXED_MEMO:
                memo.clear()
            linear = self.linear_layer_time(tokens, share) + self.elementwise_time(tokens, share)
            fixed = memo[key] = (linear, self.lm_head_time(rows))
        return fixed

    def decode_attention_times(self, seqs: int, kv_tokens: np.ndarray) -> np.ndarray:
        """``attention_layer_time`` of decode-only steps, vectorised over steps (``kv_tokens``: floats, as
        ``window_kv_tokens`` gives)."""
        if self.index_topk is not None:
            selected = np.minimum(kv_tokens, seqs * self.index_topk)
            compute = selected * self.attn_flops_per_pair + kv_tokens * self.index_flops_per_pair
            compute /= self.attention_peak
            memory = ((selected + seqs) * self.latent_bytes_per_token_layer
                      + (kv_tokens + seqs) * self.index_bytes_per_token_layer) / self.bandwidth
            return np.hypot(compute, memory) + self.floors.attention_s
        compute = kv_tokens * self.attn_flops_per_pair  # (in place from here: windows are many and short)
        compute /= self.attention_peak
        memory = kv_tokens + seqs
        memory *= self.kv_bytes_per_token_layer
        memory /= self.bandwidth
        times = np.hypot(compute, memory, out=compute)
        times += self.floors.attention_s
        return times

    def decode_times(self, first: StepShape, steps: int, share: DataParallelShare | None = None) -> np.ndarray:
        seqs = first.decode_seqs
        linear, once = self._decode_fixed(seqs, share)
        if first.sliding is not None:  # a hybrid model: full-attention and sliding-window layers
            times = self.decode_attention_times(seqs, window_kv_tokens(first, steps))
            times += linear
            times *= self.full_layers
            sliding = self.decode_attention_times(seqs, window_sliding_kv_tokens(first, steps))
            sliding += linear
            sliding *= self.sliding_layers
            times += sliding
            times += once
            return times
        if self.gdn is not None:  # the attention layers per step, the GDN layers' time the same at every step
            times = self.decode_attention_times(seqs, window_kv_tokens(first, steps))
            times += linear
            times *= self.full_layers
            times += once + self._gdn_decode(first, share)
            return times
        if self.index_topk is None:  # dense attention: the whole window in one compiled call (windows are many)
            args = self._dense_args
            if args is None:
                args = self._dense_args = (float(self.attn_flops_per_pair), self.attention_peak,
                                           float(self.kv_bytes_per_token_layer), self.bandwidth,
                                           self.floors.attention_s, float(self.model.num_layers))
            times = np.empty(steps)  # (filled in place: a compiled function returning an array pays to box it)
            _dense_decode_window(times, seqs, float(first.decode_kv_tokens), linear, once, *args)
            return times
        times = self.decode_attention_times(seqs, window_kv_tokens(first, steps))
        times += linear
        times *= self.model.num_layers
        times += once
        return times

    def _decode_fixed_parts(self, seqs: int, share: DataParallelShare | None) -> tuple[float, float]:
        """A decode step's linear layers (one layer's) and its once-per-step parts (LM head, collectives): they depend
        on the batch size alone, not on the KV lengths."""
        tokens = seqs if share is None else share.tokens
        linear = self.linear_layer_time(tokens, share) + self.elementwise_time(tokens, share)
        return linear, self.lm_head_time(seqs) + self.comm_time(tokens, seqs, share)

    def _gdn_decode(self, first: StepShape, share: DataParallelShare | None) -> float:
        """The GDN layers' time of one decode step of ``first``'s sequences (kept per batch size without a group)."""
        seqs = first.decode_seqs
        if share is not None:
            return self.gdn_layers_time(share.tokens, first, share)
        fixed = self._gdn_decode_memo.get(seqs)
        if fixed is None:
            fixed = self._gdn_decode_memo[seqs] = self.gdn_layers_time(seqs, first)
        return fixed

    def _decode_fixed(self, seqs: int, share: DataParallelShare | None = None) -> tuple[float, float]:
        """``_decode_fixed_parts``, kept per batch size and share, of which it is a pure function (decode windows are
        many and short; a CUDA graph's padded share repeats at every window of its size). Cleared when full (a
        data-parallel group's shares vary), which changes no answer."""
        memo = self._decode_fixed_memo
        key = seqs if share is None else (seqs, *share.priced)
        fixed = memo.get(key)
        if fixed is None:
            if len(memo) >= DECODE_FIXED_MEMO:
                memo.clear()
            fixed = memo[key] = self._decode_fixed_parts(seqs, share)
        return fixed


@njit(cache=True)
def _dense_decode_window(times: np.ndarray, seqs: int, kv_first: float, linear: float, once: float,
                         flops_per_pair: float, peak: float, bytes_per_token: float, bandwidth: float, floor: float,
                         layers: float) -> None:
    """``RooflineCompute.decode_times`` of dense attention into ``times`` (one per step): the same arithmetic, in the
    same order, as ``decode_attention_times`` over ``window_kv_tokens`` followed by the per-step linear and once
    parts."""
    for k in range(len(times)):
        kv = float(k) * seqs + kv_first
        compute = kv * flops_per_pair / peak
        memory = (kv + seqs) * bytes_per_token / bandwidth
        times[k] = (math.hypot(compute, memory) + floor + linear) * layers + once

