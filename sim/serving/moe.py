"""Mixture-of-experts routing as the compute models see it: how many distinct experts a step touches, and the rows and
activation bytes of vLLM's fused-MoE kernel that computes them.

A step's MoE layer reads the weights of every expert that at least one of its tokens is routed to, so
its memory traffic follows the number of *distinct* experts, not tokens × experts per token. kvsim
does not simulate a gate: it takes the expectation under uniform routing (each token picks
``experts_per_token`` distinct experts of ``experts`` uniformly at random, tokens independently),
which a gate trained with a load-balancing loss approaches. LLMServingSim's default (``BALANCED`` in
``serving/core/gate_function.py``) takes min(tokens × k, experts) instead, the most a step can touch;
the expectation is lower whenever two tokens share an expert.

Data parallelism (``serving.data_parallel_size`` D, vLLM's): the MoE layers of D instances form one group over their
D × TP GPUs, which holds the experts in one of two layouts (``serving.enable_expert_parallel``, vLLM's flag;
fused_moe/config.py ``FusedMoEParallelConfig.make``). Expert parallel (true): each GPU holds E / (D × TP) whole
experts. Not expert parallel (vLLM's CLI default): ``flatten_tp_across_dp`` splits every expert by width over the
D × TP GPUs, each computing every (token, expert) pair of the group's tokens at I / (D × TP) of the width. Either
way each GPU
computes 1/(D × TP) of the group's token-expert FLOPs and reads 1/(D × TP) of the weights of the experts the group's
tokens touch, in expectation (``rank_experts``: whole experts or slices of every touched one, the same bytes).
The group's instances step in lockstep (``sim.serving.data_parallel``): a step's MoE layers see the
group's G tokens (the ranks' own, padded as vLLM pads them), touching E · (1 − (1 − k/E)^G) experts,
and exchange the group's hidden states by an all-gather and a reduce-scatter every MoE layer (vLLM's
default ``allgather_reducescatter`` all-to-all backend; ``sim.serving.collectives.TensorParallelComm``); the experts'
elementwise kernels (align, activation, ``moe_sum``) run on those G tokens too (``sim.serving.elementwise``).
Expert parallel at TP > 1 the MoE layers run sequence-parallel (``ParallelConfig.use_sequence_parallel_moe``):
each TP rank carries ceil(T / TP) of its instance's T tokens into the exchange over the group's D × TP GPUs, and the
TP ranks all-gather the MoE output after it (``sequence_parallel_rows``; the zero rows padding T to a multiple of TP
are exchanged, but left out of the experts' rows here). Not expert parallel, vLLM falls back to the same
all-gather/reduce-scatter (``maybe_make_prepare_finalize``: "DP deployment with no --enable-expert-parallel") over
the DP group (``AgRsAll2AllManager._get_comm_group``: the D ranks of one TP index), every TP rank carrying all T
tokens, and keeps the MoE layer's TP all-reduce (``MoERunner._maybe_reduce_final_output``:
``tensor_model_parallel_all_reduce``, over the instance's TP ranks).
A step priced without its group (``DataParallelShare`` None: the planner's estimates, calibration) takes a
group of D ranks each carrying a step like its own, G = D × T.

Padded rows (vLLM's fused-MoE Triton kernel, ``fused_moe.py``): ``moe_align_block_size`` sorts a step's
(token, expert) pairs by expert and pads each expert's run to a multiple of the kernel's ``BLOCK_SIZE_M``, and the
grouped GEMMs compute every padded row (the padding rows are masked on load and store, not skipped), so the experts'
FLOPs follow Σ_e ceil(n_e / BM) × BM, not G × k. Under uniform routing an expert's count n_e is Binomial(G, k/E),
and ``expected_padded_rows`` takes the exact expectation. BM is ``get_default_config``'s (no tuned JSON config): 16
while the rank's tokens M ≤ its local experts, else 64. What the kernels move besides the weights
(``routed_activation_bytes``): the GEMM over w13 reads each token's hidden state and writes each (token, expert)
pair's gate and up, the GEMM over w2 reads each pair's activation and writes its hidden-size output; a rank writes
every pair's outputs, not its share's (expert parallel: zeros for the other ranks' experts, ``write_zeros_to_output``;
experts split by width: each pair's partial sum, whole-width). At D = 1 the experts are split by width over TP; at
D > 1 as ``expert_parallel`` says (over D × TP either way). vLLM's local experts, which pick BM, are E / (D × TP)
expert parallel and all E split by width.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from functools import lru_cache
from typing import TYPE_CHECKING

import numpy as np

if TYPE_CHECKING:
    from sim.model_shape import ModelSpec


def expected_distinct_experts(tokens: float, experts_per_token: int, experts: int) -> float:
    """Expected number of distinct experts that ``tokens`` tokens touch, each choosing ``experts_per_token``
    of ``experts`` uniformly (the uniform-routing expectation): E · (1 − (1 − k/E)^T).

    One expert is missed by one token with probability 1 − k/E, by all T independent tokens with
    (1 − k/E)^T; summing over the E experts gives the expectation. T = 1 gives k; T → ∞ gives E.
    """
    if tokens <= 0:
        return 0.0
    if experts_per_token >= experts:
        return float(experts)
    # (1 - k/E)^T as exp(T log1p(-k/E)), accurate for small k/E and any T
    return -experts * math.expm1(tokens * math.log1p(-experts_per_token / experts))



@dataclass(frozen=True, slots=True)
class DataParallelShare:
    """One rank's part in a lockstep step of its data-parallel group."""

    tokens: int  # tokens this rank's layers compute (its own, padded to the group's largest when vLLM pads)
    group_tokens: int  # Σ over the group's ranks of their ``tokens``: what the MoE layers route
    # Σ over the group's ranks of their ``tokens`` as the MoE exchange carries them (``sequence_parallel_rows``):
    # the rows each GPU's all-gather ends with
    exchanged_tokens: int
    # Σ over the group's ranks of their own tokens before any padding (a dummy step's token is padding): those whose
    # experts are model FLOPs (``sim.serving.utilization``); no step's time reads it
    unpadded_group_tokens: int

    @property
    def priced(self) -> tuple[int, int, int]:
        """The fields a step's time reads (a memo's key: the unpadded count would only split its entries)."""
        return self.tokens, self.group_tokens, self.exchanged_tokens


def sequence_parallel_size(tensor_parallel_size: int, expert_parallel: bool = True) -> int:
    """The ways a data-parallel rank's MoE layers split its tokens over its TP ranks: TP expert parallel
    (``ParallelConfig.use_sequence_parallel_moe``: expert parallel, TP > 1, D > 1, the default all-to-all backend
    among others), else 1 (every TP rank carries all of them)."""
    return tensor_parallel_size if expert_parallel else 1


def sequence_parallel_rows(tokens: int, sequence_parallel: int) -> int:
    """A rank's ``tokens`` as its data-parallel group's MoE exchange carries them, split ``sequence_parallel`` ways
    (``sequence_parallel_size``): ``sequence_parallel_chunk`` pads the rank's T tokens with zero rows to a multiple of
    it and each TP rank sends its ceil(T / it); at 1, T."""
    if sequence_parallel == 1:
        return tokens
    return -(-tokens // sequence_parallel) * sequence_parallel


def group_tokens(tokens: float, data_parallel_size: int, share: DataParallelShare | None) -> float:
    """The group's tokens in a step of ``tokens`` tokens: the share's, else D ranks each with ``tokens``."""
    return data_parallel_size * tokens if share is None else share.group_tokens


def rank_experts(group_tokens: float, model: ModelSpec, data_parallel_size: int = 1) -> float:
    """Expected distinct experts per data-parallel rank: of the experts the group's ``group_tokens`` tokens
    touch, the 1/``data_parallel_size`` share one rank's GPUs hold (all of them for D = 1): as whole experts expert
    parallel, or as 1/D of every touched expert's width not (the same bytes)."""
    touched = expected_distinct_experts(group_tokens, model.num_experts_per_tok, model.num_experts)
    return touched if data_parallel_size == 1 else touched / data_parallel_size


FP32_BYTES = 4  # fused_moe's top-k weights; an FP8 activation's scales
INDEX_BYTES = 4  # fused_moe's expert ids and sorted token ids (int32)


def fp8_bytes(width: float, block: int | None) -> float:
    """Bytes of ``width`` values quantized to FP8: a byte each, and one fp32 scale per ``block`` of them (None: a
    per-tensor scale, nothing per token)."""
    return width + (width / block * FP32_BYTES if block else 0.0)


def dispatch_bytes(model: ModelSpec, dtype_bytes: int) -> float:
    """One token's bytes a data-parallel group's MoE dispatch all-gathers (vLLM 0.33 prepare_finalize/naive_dp_ep.py
    ``MoEPrepareAndFinalizeNaiveDPEPModular.prepare``, one ``all_gatherv`` of its tensors in
    distributed/device_communicators/all2all.py ``AgRsAll2AllManager.dispatch``): the hidden state as the experts read
    it, an FP8 checkpoint's quantized before the gather (``_quantize_and_setup_dispatch``, ``moe_kernel_quantize_input``:
    a byte a value, and its per-block fp32 scales gathered beside it; a per-tensor scale, a scalar on every rank, is
    not gathered), and the token's k top-k weights (fp32) and expert ids (int32), which the router chose on its rank."""
    topk = model.num_experts_per_tok * (FP32_BYTES + INDEX_BYTES)
    if model.weight_quantization == "fp8":
        return fp8_bytes(model.hidden_size, model.weight_block_size[1] if model.weight_block_size else None) + topk
    return model.hidden_size * dtype_bytes + topk


# vLLM fused_moe.py get_default_config (unquantized and per-tensor FP8, no tuned config file): BLOCK_SIZE_M 16
# for M <= E (the rank's tokens, its local experts: w2's first dimension), else 64; block-wise FP8 (dtype fp8_w8a8
# with a block_shape, its first branch): 64 at any M
SMALL_BLOCK_M, LARGE_BLOCK_M = 16, 64


def fused_moe_block_m(tokens: float, local_experts: float, block_fp8: bool = False) -> int:
    """The fused-MoE kernel's ``BLOCK_SIZE_M`` for a rank's ``tokens`` (hidden-state rows) and ``local_experts``
    (``block_fp8``: the experts are block-wise FP8, ``ModelSpec.weight_block_size``)."""
    return SMALL_BLOCK_M if tokens <= local_experts and not block_fp8 else LARGE_BLOCK_M


def _block_fp8(model: ModelSpec) -> bool:
    """Whether vLLM runs the model's experts as block-wise FP8 (fp8_w8a8 with a block_shape)."""
    return model.weight_quantization == "fp8" and model.weight_block_size is not None


@lru_cache(maxsize=1 << 16)
def _padded_rows(tokens: int, experts_per_token: int, experts: int, block_m: int) -> float:
    """``expected_padded_rows`` at an integer token count (kept: steps repeat their sizes)."""
    if tokens <= 0:
        return 0.0
    if experts_per_token >= experts:  # every expert takes every token
        return float(experts * block_m * math.ceil(tokens / block_m))
    if block_m == 1:  # no padding: the routed pairs
        return float(tokens * experts_per_token)
    from scipy.special import bdtrc  # (here: scipy.special takes ~0.2 s and 11 MiB to import, and a dense model's run
    # never pads expert rows)

    p = experts_per_token / experts
    # ceil(n / B) = #{j >= 0: j B < n}, so E[ceil(n / B)] = sum_j P(n > j B): one binomial tail per block
    blocks = np.arange(0, tokens // block_m + 1) * block_m
    tails = bdtrc(blocks, tokens, p)  # P(n > j B), n ~ Binomial(tokens, p)
    return experts * block_m * float(tails.sum())


def expected_padded_rows(tokens: float, experts_per_token: int, experts: int, block_m: int) -> float:
    """Expected rows the fused experts' GEMMs compute for ``tokens`` tokens, each routed to ``experts_per_token`` of
    ``experts`` experts uniformly: E × BM × E[ceil(n / BM)], n ~ Binomial(tokens, k/E) an expert's pairs. BM = 1 gives
    tokens × k; as tokens grow the padding, under E × BM rows, becomes a vanishing share. A fractional token count
    (a planner's mean) interpolates between its neighbours."""
    if tokens <= 0:
        return 0.0
    low = math.floor(tokens)
    rows = _padded_rows(low, experts_per_token, experts, block_m)
    if tokens == low:
        return rows
    return rows + (tokens - low) * (_padded_rows(low + 1, experts_per_token, experts, block_m) - rows)


def rank_expert_rows(group_tokens: float, model: ModelSpec, data_parallel_size: int = 1,
                     tensor_parallel_size: int = 1, expert_parallel: bool = True) -> float:
    """Padded expert rows per GPU: the group's ``expected_padded_rows`` over its D ranks (each GPU computes 1/(D × TP)
    of them at full width, or all of them at 1/(D × TP) of the width: the same FLOPs; kvsim counts a row at this
    rank's width / TP, hence / D here). BM as vLLM picks it: the rank's hidden-state rows are the group's tokens and
    its local experts E / (D × TP) expert parallel at D > 1, all E where the experts are split by width."""
    d = data_parallel_size
    whole = d > 1 and expert_parallel
    local = model.num_experts / (d * tensor_parallel_size) if whole else model.num_experts
    block_m = fused_moe_block_m(group_tokens, local, _block_fp8(model))
    return expected_padded_rows(group_tokens, model.num_experts_per_tok, model.num_experts, block_m) / d


def block_expert_rows(tokens: int, model: ModelSpec, experts: float) -> float:
    """Padded expert rows of one GPU's whole MoE block when ``tokens`` tokens are routed, k each, to ``experts``
    activated experts (a bundle's moe.csv row: each activated expert's pairs Binomial(tokens, k / experts))."""
    activated = max(1, round(experts))
    block_m = fused_moe_block_m(tokens, model.num_experts, _block_fp8(model))
    return expected_padded_rows(tokens, model.num_experts_per_tok, activated, block_m)


def expert_width_split(tensor_parallel_size: int = 1, data_parallel_size: int = 1, expert_parallel: bool = True) -> int:
    """The ways each expert's intermediate width is split over a GPU's peers: TP at D = 1, none at D > 1 expert
    parallel (each rank holds whole experts), D × TP at D > 1 otherwise (``flatten_tp_across_dp``), so a GPU computes
    I / this of each pair."""
    if data_parallel_size == 1:
        return tensor_parallel_size
    return 1 if expert_parallel else data_parallel_size * tensor_parallel_size


def routed_activation_bytes(group_tokens: float, model: ModelSpec, dtype_bytes: int, data_parallel_size: int = 1,
                            tensor_parallel_size: int = 1, expert_parallel: bool = True) -> float:
    """Activation bytes one GPU's two fused-expert GEMMs move for the group's tokens G (vLLM fused_moe.py
    ``fused_experts_impl``: intermediate_cache1, 2, 3). w13 reads each token's H-wide hidden state (once: the k pairs
    of a token find it in L2) and writes 2 × I' per pair; w2 reads I' per pair it computes and writes H per pair.
    Experts split by width (I' = I / TP at D = 1, I / (D × TP) at D > 1 not expert parallel): every pair computed
    and written on every rank. D > 1 expert parallel over the D × TP ranks (I' = I): every pair's outputs written
    (those of other ranks' experts as zeros), its own 1/(D × TP) of the pairs read."""
    h, k = model.hidden_size, model.num_experts_per_tok
    width = model.moe_intermediate_size / expert_width_split(tensor_parallel_size, data_parallel_size, expert_parallel)
    if data_parallel_size == 1 or not expert_parallel:
        per_token = h + k * (2 * width + width + h)
    else:
        per_token = h + k * (2 * width + h) + k * width / (data_parallel_size * tensor_parallel_size)
    return group_tokens * per_token * dtype_bytes


@dataclass(frozen=True, slots=True)
class FusedExperts:
    """One GPU's fused-MoE kernel for a model: its experts' padded rows and its GEMMs' activation bytes (D: the
    data-parallel group's ranks, ``data_parallel_size``; each call may price another D, as a planner's does;
    ``expert_parallel``: the group's layout at D > 1)."""

    model: ModelSpec
    dtype_bytes: int
    tensor_parallel_size: int = 1
    data_parallel_size: int = 1
    expert_parallel: bool = True

    def rows(self, group: float) -> float:
        """``rank_expert_rows`` of the group's ``group`` tokens."""
        return rank_expert_rows(group, self.model, self.data_parallel_size, self.tensor_parallel_size,
                                self.expert_parallel)

    def block_rows(self, tokens: int, experts: float) -> float:
        """``block_expert_rows``: ``tokens`` routed to ``experts`` activated experts on one GPU."""
        return block_expert_rows(tokens, self.model, experts)

    def activation_bytes(self, group: float, data_parallel_size: int | None = None) -> float:
        """``routed_activation_bytes`` of the group's ``group`` tokens."""
        d = self.data_parallel_size if data_parallel_size is None else data_parallel_size
        return routed_activation_bytes(group, self.model, self.dtype_bytes, d, self.tensor_parallel_size,
                                       self.expert_parallel)
