"""FlashAttention's varlen kernel on a step that mixes prefill chunks and decodes: what the roofline prices there.

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
  attention peak), however idle the rest of the GPU, and each of its thread blocks pays a tile's fixed time
  (both as a prefill's tiles do: ``sim.serving.attention_waves``);
- each query head reads its KV head's keys and values itself; the thread blocks in flight together (the launch
  order takes one query head of every sequence, then the next head) share a read through L2 when they are query
  heads of one KV head, up to ``sm_count`` / sequences of them, and the next query head of a KV head finds in L2
  the share of that KV head's cache (of every sequence: what the launch streams in between) the L2 holds
  (``l2_mib`` in profiles/gpus.yaml: the RTX PRO 6000 grid's 64 and 128 decodes of 1k–2k tokens beside a chunk,
  +17% to +68% without it, −15% to −3% with it).

Tile rows: 64 on 8.6, 8.9 and 12.x, 128 on 8.0 (causal head-dim-128 kernels, flash_fwd_launch_template.h
``run_mha_fwd_hdim128``: 64 × 64 where ``is_sm8x``, else 128 × 64). On 12.x the source's 128 is not what runs: the
RTX PRO 6000 bundle (tests/fixtures/llmservingsim_rtxpro6000, vLLM 0.19, 32 query heads) times a 16-token chunk over
a 16k context, and chunks of 256 and 273 tokens, alike (340–359 µs) and chunks of 410 and 512 at twice that: 5 tiles
of 64 rows × 32 heads (160 thread blocks) fit its 188 SMs at once, 7 (224) do not; tiles of 128 would fit 4.
Measured against the two bundles' mixed steps (decodes beside a chunk, KV 1k–16k), the summed prefill and decode
parts come out 44% (RTX 4090) and 63% (RTX PRO 6000) low at the median; this model 36% high and 4% low with the
default ``compute.attention_efficiency`` (FlashAttention 2's 0.54: the RTX 4090 runs it at ~0.8 of its peak, with 0.8
2% high). Only head dimension 128 is read (other head sizes launch other tiles); multi-head latent attention runs
another backend on these GPUs (TRITON_MLA).

FlashAttention 3 (compute capability 9.0) always packs a KV head's query heads into its tiles of 128 rows
(hopper/heuristics.h ``should_pack_gqa``: true for varlen; hopper/tile_size.h: 128 × 128 at head dim 128), so a
decode's tile holds its ``kv_group`` query heads and reads the KV once, and it splits each sequence's KV as its
length asks (``prepare_varlen_num_blocks``) up to a bound: vLLM gives a step of at most
``max_cudagraph_capture_size`` tokens its graphs' bound (v1/attention/backends/flash_attn.py ``max_num_splits``,
vLLM 0.19 and 0.33 alike), a larger step FA3's own ``get_num_splits``, which reasons as if the batch were one
sequence of the longest chunk and, for a causal call, returns 1 once that chunk's packed query tiles over the KV heads
fill 0.8 of the SMs (``num_splits_heuristic``). There, as on FA2, a long decode is one tile's walk on one SM: e.g.
16k tokens beside a chunk of 2,048 on an H100 (Llama-3.1-8B: 8 KV heads × 64 tiles ≥ 0.8 × 132) — read from the
source, not measured here (no Hopper mixed-step timing is at hand).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

from sim.model_shape import ModelSpec
from sim.serving.attention_backend import capability_of
from sim.serving.attention_waves import query_tile_rows
from sim.serving.step_shape import StepShape
from sim.specs import GPUSpec

HEAD_DIM = 128  # the head size whose tiles are read above
SPLIT_FILL = 0.8  # num_splits_heuristic: one split once the blocks fill this share of the SMs


def tile_rows(capability: tuple[int, int]) -> int | None:
    """Query rows of FlashAttention's thread block on a GPU of ``capability``: FA2's on 8.x and 12.x, FA3's on 9.0
    (None: vLLM runs another kernel, FlashInfer or FA4 on 10.x)."""
    return query_tile_rows(capability) if capability[0] in (8, 9, 12) else None


@dataclass(frozen=True, slots=True)
class VarlenAttention:
    """One GPU's FlashAttention varlen kernel (FA2, or FA3 with ``packs_gqa``) over one attention layer's heads (per
    tensor-parallel rank)."""

    tile_rows: int
    sm_count: int
    query_heads: float  # per rank
    kv_group: float  # query heads per KV head
    packs_gqa: bool = False  # FA3: a tile holds a KV head's query heads
    graph_tokens: int = 0  # FA3: the largest step vLLM gives its CUDA graphs' split bound (0: none, eager)
    kv_token_bytes: float = 0.0  # one token's keys and values of one KV head
    l2_bytes: float = 0.0  # the GPU's L2 cache (0: unknown, nothing found there)

    def walks_unsplit(self, shape: StepShape) -> bool:
        """Whether the step's decodes run unsplit beside its prefill chunks (FA2: always; FA3: see the module)."""
        if not (shape.prefill_seqs and shape.decode_seqs):
            return False
        if not self.packs_gqa:
            return True
        if shape.tokens <= self.graph_tokens:
            return False
        kv_heads = self.query_heads / self.kv_group
        tiles = kv_heads * math.ceil(shape.prefill_chunk_max * self.kv_group / self.tile_rows)
        return tiles >= SPLIT_FILL * self.sm_count

    def decode_flops(self, shape: StepShape, flops_per_pair: float) -> float:
        """The decodes' FLOPs as their padded tiles compute them (``flops_per_pair``: a (query, key) pair's over all
        query heads of the rank)."""
        rows = self.tile_rows / self.kv_group if self.packs_gqa else self.tile_rows  # per query head
        return rows * flops_per_pair * shape.decode_kv_tokens

    def decode_blocks(self, shape: StepShape) -> float:
        """The decodes' thread blocks: one per query head of each (FA3: per KV head)."""
        heads = self.query_heads / self.kv_group if self.packs_gqa else self.query_heads
        return shape.decode_seqs * heads

    def decode_kv_reads(self, shape: StepShape) -> float:
        """KV tokens (of every KV head) the decodes read: once per query head, less what blocks in flight share and
        what the next query heads of a KV head find still in L2 (FA3's packed tiles: once)."""
        tokens = shape.decode_kv_tokens + shape.decode_seqs
        if self.packs_gqa:
            return tokens
        sequences = shape.decode_seqs + shape.prefill_seqs
        shared = min(self.kv_group, max(1.0, self.sm_count / sequences))
        # between two query heads of a KV head the launch streams that KV head's cache of every sequence
        streamed = tokens * self.kv_token_bytes
        in_l2 = min(1.0, self.l2_bytes / streamed) if streamed > 0 else 0.0
        return tokens * (1 + (self.kv_group / shared - 1) * (1 - in_l2))


def varlen_attention(model: ModelSpec, gpu: GPUSpec, tensor_parallel_size: int, graph_tokens: int = 0,
                     kv_token_bytes: float = 0.0) -> VarlenAttention | None:
    """The kernel that prices ``model``'s mixed steps on ``gpu`` (``graph_tokens``: the largest CUDA graph's
    tokens, 0 under enforce_eager; ``kv_token_bytes``: one token's keys and values of one KV head); None where its
    steps are the sum of their parts (another attention kernel, another head size, latent or sparse attention, or
    a GPU whose SMs its spec does not give)."""
    capability = capability_of(gpu.name)
    rows = tile_rows(capability)
    if (rows is None or gpu.sm_count is None or model.is_mla or model.is_sparse_attention
            or model.head_dim != HEAD_DIM):
        return None
    query_heads = model.num_attention_heads / tensor_parallel_size
    kv_heads = max(1, model.num_kv_heads // tensor_parallel_size)
    fa3 = capability[0] == 9
    return VarlenAttention(rows, gpu.sm_count, query_heads, max(1.0, query_heads / kv_heads), packs_gqa=fa3,
                           graph_tokens=graph_tokens if fa3 else 0, kv_token_bytes=kv_token_bytes,
                           l2_bytes=gpu.l2_bytes or 0.0)
