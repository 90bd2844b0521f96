"""FlashAttention 2's varlen kernel on a step that mixes prefill chunks and decodes: what the roofline prices there.

vLLM's FlashAttention backend runs a step's attention as one ``flash_attn_varlen_func`` call over all its sequences,
and on compute capability 8.x and 12.x that is FlashAttention 2 (vllm/v1/attention/backends/fa_utils.py
``get_flash_attn_version``: FA3 on 9.0, FA4 or FlashInfer on 10.x, else FA2). Its forward packs a KV head's query
heads into one thread block and splits a long KV over several only when every sequence has a single query
(vllm-project/flash-attention csrc/flash_attn/flash_api.cpp ``mha_varlen_fwd``: ``seqlenq_ngroups_swapped`` needs
``max_seqlen_q == 1``, and only then ``set_params_splitkv``; a paged KV otherwise runs unsplit). With a prefill chunk
in the batch, each query head of each decode is a thread block of ``tile_rows`` query rows (one of them real) that
walks the decode's whole KV alone (grid: query tiles × sequences × query heads, ``run_flash_fwd``). Three costs
follow, none of which a decode-only step has:
- the tile's matrix multiplies run on all its rows: a decode costs ``tile_rows`` × its attention FLOPs;
- a long decode takes one thread block's walk over its KV on one SM (its FLOPs at 1 / ``sm_count`` of the
  attention peak), however idle the rest of the GPU;
- each query head reads its KV head's keys and values itself; the thread blocks in flight together (the launch
  order takes one query head of every sequence, then the next head) share a read through L2 when they are query
  heads of one KV head, up to ``sm_count`` / sequences of them.

Tile rows: 64 on 8.6, 8.9 and 12.x, 128 on 8.0 (causal head-dim-128 kernels, flash_fwd_launch_template.h
``run_mha_fwd_hdim128``: 64 × 64 where ``is_sm8x``, else 128 × 64). On 12.x the source's 128 is not what runs: the
RTX PRO 6000 bundle (tests/fixtures/llmservingsim_rtxpro6000, vLLM 0.19, 32 query heads) times a 16-token chunk over
a 16k context, and chunks of 256 and 273 tokens, alike (340–359 µs) and chunks of 410 and 512 at twice that: 5 tiles
of 64 rows × 32 heads (160 thread blocks) fit its 188 SMs at once, 7 (224) do not; tiles of 128 would fit 4.
Measured against the two bundles' mixed steps (decodes beside a chunk, KV 1k–16k), the summed prefill and decode
parts came out 48% (RTX 4090) and 68% (RTX PRO 6000) low at the median; this model 51% high and 8% high with the
default ``compute.attention_efficiency`` (the RTX 4090 runs FlashAttention 2 at ~0.8 of its peak, not 0.45: with 0.8,
3% high). Only head dimension 128 is read (other head sizes launch other tiles); multi-head latent attention runs
another backend on these GPUs (TRITON_MLA).
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.model_shape import ModelSpec
from sim.serving.attention_backend import capability_of
from sim.serving.step_shape import StepShape
from sim.specs import GPUSpec

HEAD_DIM = 128  # the head size whose tiles are read above


def tile_rows(capability: tuple[int, int]) -> int | None:
    """Query rows of FlashAttention 2's thread block on a GPU of ``capability`` (None: vLLM runs another kernel)."""
    major, minor = capability
    if major == 8:
        return 64 if minor > 0 else 128
    if major == 12:
        return 64
    return None


@dataclass(frozen=True, slots=True)
class VarlenAttention:
    """One GPU's FlashAttention 2 varlen kernel over one attention layer's heads (per tensor-parallel rank)."""

    tile_rows: int
    sm_count: int
    query_heads: float  # per rank
    kv_group: float  # query heads per KV head

    def compute_seconds(self, shape: StepShape, prefill_flops: float, flops_per_pair: float, peak: float) -> float:
        """The layer's attention compute in a mixed step: the prefill's FLOPs and the decodes' padded tiles over the
        attention peak, or the longest decode's walk on one SM if that is longer (``flops_per_pair``: a (query, key)
        pair's FLOPs over all query heads of the rank)."""
        decode_flops = self.tile_rows * flops_per_pair * shape.decode_kv_tokens
        longest = self.tile_rows * flops_per_pair / self.query_heads * shape.decode_kv_max
        return max((prefill_flops + decode_flops) / peak, longest / (peak / self.sm_count))

    def decode_kv_reads(self, shape: StepShape) -> float:
        """KV tokens (of every KV head) the decodes read: once per query head, less what blocks in flight share."""
        sequences = shape.decode_seqs + shape.prefill_seqs
        shared = min(self.kv_group, max(1.0, self.sm_count / sequences))
        return (shape.decode_kv_tokens + shape.decode_seqs) * self.kv_group / shared


def varlen_attention(model: ModelSpec, gpu: GPUSpec, tensor_parallel_size: int) -> VarlenAttention | None:
    """The kernel that prices ``model``'s mixed steps on ``gpu``; None where its steps are the sum of their parts
    (another attention kernel, another head size, latent attention, or a GPU whose SMs its spec does not give)."""
    rows = tile_rows(capability_of(gpu.name))
    if rows is None or gpu.sm_count is None or model.is_mla or model.head_dim != HEAD_DIM:
        return None
    query_heads = model.num_attention_heads / tensor_parallel_size
    kv_heads = max(1, model.num_kv_heads // tensor_parallel_size)
    return VarlenAttention(rows, gpu.sm_count, query_heads, max(1.0, query_heads / kv_heads))
