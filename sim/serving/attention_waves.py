"""A step's attention as the thread blocks that run it: what its FLOPs over the attention peak leave out.

The attention kernels vLLM runs (FlashAttention 2 and 3, FlashInfer's prefill) give each thread block a tile of
``tile_rows`` query rows of one head and let it walk the keys its rows attend to. Two costs follow that a step's
summed FLOPs miss:
- every tile pays a time its FLOPs do not (loading its queries, the softmax's rescaling and the epilogue, writing
  its output): spread over the GPU, tiles / SMs × ``compute.attention_tile_us``;
- the longest tile is one SM's walk over its keys (the last tile of the longest prompt attends to its whole
  context), so a step is at least that walk at 1 / ``sm_count`` of the attention peak, plus its tile time: a few
  long prompts cannot fill the GPU.
Measured (NVIDIA AIConfigurator's vLLM context attention, batches 1–8 of 256–16,384-token prompts, 8–64 heads on
A100, L40S, RTX PRO 6000, H100, H200 and B200, each GPU predicted from a fit to the other five): the median error of
the attention call falls from 12.9 / 8.1 / 13.9 / 18.6 / 20.4 / 14.7% with FLOPs alone to 14.6 / 6.9 / 7.6 / 14.1 /
15.3 / 8.8%, and its trend with prompt length (−14% at 1k, +15% at 16k) goes (tools/README.md).

Tile rows: FlashAttention 2's causal head-dim-128 tiles are 64 rows on 8.6, 8.9 and 12.x and 128 on 8.0
(flash_fwd_launch_template.h ``run_mha_fwd_hdim128``); FlashAttention 3's 128 (hopper/tile_size.h); FlashInfer's
prefill 128 once a sequence's packed query rows exceed 64 (include/flashinfer/utils.cuh ``FA2DetermineCtaTileQ``).
A chunk's tiles are counted as ceil(chunk / 64) blocks of 64 rows (``StepShape.prefill_row_blocks``), halved for
128-row tiles: exact for chunks of a whole number of 128 rows, half a tile a chunk over otherwise. Decode-only
steps split each sequence's KV over thread blocks as the GPU's SMs ask (split-KV): their fixed costs are the attention
floor's, and this model is not applied to them. DeepSeek's sparse attention (a top-k gather) runs other kernels.

The kernels differ in how much of the FLOP peak they reach, not only in their tiles: FlashAttention 3 on Hopper
(warpgroup MMA fed by the TMA, its softmax overlapped with the next tile's matrix products) against FlashAttention 2
on 8.x and 12.x and FlashInfer on B200 (synchronous MMA). Fitted per GPU to AIConfigurator's tables (one folder at a
time) the attention's share of the peak is 0.68–0.69 on H100 and H200, 0.52–0.57 on A100, L40S, RTX PRO 6000 and
B200; ``compute.attention_efficiency`` null takes the kernel's (``KERNEL_ATTENTION_EFFICIENCY``).
"""

from __future__ import annotations

from dataclasses import dataclass

from sim.model_shape import ModelSpec
from sim.serving.attention_backend import capability_of
from sim.serving.step_shape import ROW_BLOCK, StepShape
from sim.specs import GPUSpec

FLASH_ATTENTION_3 = "FlashAttention 3"  # compute capability 9.x
FLASH_ATTENTION_2 = "FlashAttention 2 / FlashInfer"  # 8.x, 12.x (FlashAttention 2), 10.x (FlashInfer)
# Attention's share of the FLOP peak by kernel where compute.attention_efficiency is null: the fit to NVIDIA
# AIConfigurator's measured vLLM operators of A100, H100, H200, B200, L40S and RTX PRO 6000 with one attention
# efficiency per kernel (tools/fit_kernel_floors.py; tools/README.md)
KERNEL_ATTENTION_EFFICIENCY = {FLASH_ATTENTION_3: 0.66, FLASH_ATTENTION_2: 0.54}


def attention_kernel(gpu: str) -> str:
    """The attention kernel vLLM runs on ``gpu`` (a profiles/gpus.yaml name or a GPU spec file; one stating no
    compute capability as a Hopper, as its tiles are), as efficiencies tell kernels apart."""
    return FLASH_ATTENTION_3 if capability_of(gpu)[0] == 9 else FLASH_ATTENTION_2


def kernel_attention_efficiency(gpu: str) -> float:
    """Attention's share of the FLOP peak on ``gpu`` (``compute.attention_efficiency`` null): its kernel's."""
    return KERNEL_ATTENTION_EFFICIENCY[attention_kernel(gpu)]


def query_tile_rows(capability: tuple[int, int]) -> int:
    """Query rows of a prefill's thread block on a GPU of ``capability`` (the module says which kernel's)."""
    major, minor = capability
    if major == 8 and minor > 0 or major == 12:
        return 64
    return 128


@dataclass(frozen=True, slots=True)
class AttentionWaves:
    """One GPU's attention thread blocks over one layer's query heads (per tensor-parallel rank)."""

    tile_rows: int
    sm_count: int
    query_heads: float  # per rank
    tile_s: float  # seconds a tile takes beyond its FLOPs

    def prefill_tiles(self, shape: StepShape) -> float:
        """The query tiles of the step's prefill chunks over all heads."""
        return self.query_heads * shape.prefill_row_blocks * ROW_BLOCK / self.tile_rows

    def walk_flops(self, keys: float, flops_per_pair: float) -> float:
        """FLOPs of one tile over ``keys`` keys (``flops_per_pair``: a (query, key) pair's over all query heads)."""
        return self.tile_rows * flops_per_pair / self.query_heads * keys

    def compute_seconds(self, flops_s: float, tiles: float, walk_flops: float, peak: float) -> float:
        """The layer's attention compute: its FLOP time (``flops_s``) with ``tiles`` thread blocks' fixed times over
        the SMs, or the longest tile's walk (``walk_flops``) on one SM with its own, whichever is longer."""
        return max(flops_s + tiles / self.sm_count * self.tile_s, walk_flops / (peak / self.sm_count) + self.tile_s)


def attention_waves(model: ModelSpec, gpu: GPUSpec, tensor_parallel_size: int, tile_s: float
                    ) -> AttentionWaves | None:
    """The thread blocks of ``model``'s attention on ``gpu`` (``tile_s``: ``compute.attention_tile_us`` in
    seconds); None where the step is its FLOPs alone (a GPU whose SMs its spec does not give, sparse attention)."""
    if gpu.sm_count is None or model.is_sparse_attention:
        return None
    rows = query_tile_rows(capability_of(gpu.name))
    return AttentionWaves(rows, gpu.sm_count, model.num_attention_heads / tensor_parallel_size, tile_s)
