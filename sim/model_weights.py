"""The bytes a model's weights take: per linear weight, per routed-expert weight, and on one GPU of a TP x DP group.

A mixin of ``sim.model_shape.ModelSpec`` (kept apart so that module stays a shape: dimensions and parameter counts);
it reads the spec's parameter counts and quantization fields.
"""

from __future__ import annotations

FP8_SCALE_BYTES = 4  # an FP8 checkpoint's weight scales are fp32 (vLLM fp8.py: weight_scale / weight_scale_inv)
FP32_BYTES = 4
# An MXFP4 checkpoint's expert weights (OCP Microscaling MXFP4, gpt-oss): 4-bit E2M1 values in blocks of 32 sharing
# one 8-bit E8M0 scale, 4 + 8 / 32 = 4.25 bits a weight (the checkpoint's *_blocks (uint8, two values a byte) and
# *_scales (uint8, one per 32) tensors; vLLM quantization/mxfp4.py Mxfp4MoEMethod, OCP MX spec v1.0)
MXFP4_BLOCK = 32
MXFP4_BYTES_PER_WEIGHT = (4 + 8 / MXFP4_BLOCK) / 8


class WeightBytes:
    """``ModelSpec``'s weight-byte methods (the parameter counts and fields they read are the spec's)."""

    __slots__ = ()

    def linear_weight_bytes(self, dtype_bytes: int) -> float:
        """Bytes one weight of a linear layer (``linear_parameters``) takes: ``dtype_bytes`` (the model dtype) unless
        the checkpoint is FP8, then one byte plus its share of the block's fp32 scale, 4 / (block rows × columns)
        (Fp8LinearMethod ``weight_scale_inv``: one scale per weight_block_size block; exact where the matrix's
        dimensions are multiples of the block, a few partial blocks' scales aside otherwise). Per-tensor FP8 (no
        block size) has one scale per matrix (a few bytes in all, not counted). An MXFP4 checkpoint keeps these in
        the model dtype but its routed experts (``expert_weight_bytes``)."""
        if self.weight_quantization in (None, "mxfp4"):
            return dtype_bytes
        if self.weight_block_size is None:
            return 1
        rows, columns = self.weight_block_size
        return 1 + FP8_SCALE_BYTES / (rows * columns)

    def expert_weight_bytes(self, dtype_bytes: int) -> float:
        """Bytes one routed expert's weight takes: MXFP4_BYTES_PER_WEIGHT (4.25 bits) in an MXFP4 checkpoint (vLLM's
        Mxfp4Config gives ``FusedMoE`` layers ``Mxfp4MoEMethod`` and every ``LinearBase`` layer
        ``UnquantizedLinearMethod``: quantization/mxfp4.py ``get_quant_method``; exact where the experts' input
        widths are multiples of 32, as gpt-oss's 2880 = 90 × 32; the padding some MoE kernels add to the expert width
        is not counted), else ``linear_weight_bytes``."""
        if self.weight_quantization == "mxfp4":
            return MXFP4_BYTES_PER_WEIGHT
        return self.linear_weight_bytes(dtype_bytes)

    def weight_bytes_per_gpu(self, dtype_bytes: int, tensor_parallel_size: int, data_parallel_size: int = 1) -> float:
        """Weights one GPU holds: all of them over the TP ranks, the routed experts over the data-parallel
        group's data_parallel_size × tensor_parallel_size GPUs (``sim.serving.moe``). ``dtype_bytes`` is the model
        dtype's (serving.dtype); an FP8 checkpoint's linear layers take ``linear_weight_bytes`` instead, an MXFP4
        one's routed experts ``expert_weight_bytes``; ``fp32_parameters`` (the routers and their biases) take 4 bytes
        whatever the dtype, whole on every rank as the routers are (``router_parameters``)."""
        fp32 = self.fp32_parameters * (FP32_BYTES - dtype_bytes)
        return self._dtype_weight_bytes_per_gpu(dtype_bytes, tensor_parallel_size, data_parallel_size) + fp32

    def _dtype_weight_bytes_per_gpu(self, dtype_bytes: int, tensor_parallel_size: int,
                                    data_parallel_size: int) -> float:
        """``weight_bytes_per_gpu`` with every weight not quantized in ``dtype_bytes``."""
        if self.weight_quantization is not None:
            return self._quantized_weight_bytes_per_gpu(dtype_bytes, tensor_parallel_size, data_parallel_size)
        replicated = self.replicated_parameters
        if replicated:  # MLA's q_a and kv_a projections, the routers: whole on every rank
            experts = self.routed_expert_parameters if data_parallel_size > 1 and self.is_moe else 0
            sharded = self.num_parameters - replicated - experts + experts / data_parallel_size
            return (sharded / tensor_parallel_size + replicated) * dtype_bytes
        if data_parallel_size == 1 or not self.is_moe:
            return self.num_parameters * dtype_bytes / tensor_parallel_size
        experts = self.routed_expert_parameters
        return (self.num_parameters - experts + experts / data_parallel_size) * dtype_bytes / tensor_parallel_size

    def _quantized_weight_bytes_per_gpu(self, dtype_bytes: int, tensor_parallel_size: int,
                                        data_parallel_size: int) -> float:
        """``weight_bytes_per_gpu`` of a quantized checkpoint: the linear weights at ``linear_weight_bytes``, the
        routed experts at ``expert_weight_bytes`` (the same for FP8), the rest at ``dtype_bytes``; each group split
        over the ranks as in the unquantized case."""
        per_weight = self.linear_weight_bytes(dtype_bytes)
        # not quantized: the indexer's wk and weights_proj, the routers (GateLinear: quant_config=None), OPT's positions
        replicated_plain = (self.num_layers * self.indexer_bf16_parameters + self.whole_router_parameters
                            + self.position_embedding_parameters)
        replicated = self.replicated_parameters - replicated_plain  # MLA's q_a, kv_a and the indexer's wq_b
        experts = self.routed_expert_parameters
        linear = self.linear_parameters - replicated - experts
        plain = self.num_parameters - self.linear_parameters - replicated_plain
        sharded = (linear * per_weight + experts / data_parallel_size * self.expert_weight_bytes(dtype_bytes)
                   + plain * dtype_bytes)
        return sharded / tensor_parallel_size + replicated * per_weight + replicated_plain * dtype_bytes
