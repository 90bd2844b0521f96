"""An MoE layer's activation kernels as vLLM 0.33 runs them (sim.serving.elementwise), by hand: the shared experts
are their own MLP with their own SiluAndMul (qwen2_moe.py Qwen2MoeMLP, deepseek_v2.py DeepseekV2MLP), one kernel
beside the routed experts' at any data-parallel degree; block-FP8 experts of 128 x 128 blocks quantize the w2 input
in the activation's kernel (experts/triton_moe.py TritonExperts.apply: ops.silu_and_mul_per_block_quant)."""

from __future__ import annotations

import dataclasses

import pytest

from sim.serving.elementwise import ElementwiseKernel, elementwise_cost, moe_block_cost
from sim.specs import model_spec
from tests.test_moe import TINY

# TINY (tests/test_moe.py) with shared experts of width 4, bf16, at TP 2 (experts split by width at D = 1), per token:
# two fused add + RMSNorms 2 x 4 x 8 x 2 B = 128 (2 kernels), the rotary embedding 2 x 2 x 4 x 2 B = 32 (1), the
# shared experts' SiluAndMul 3 x 4 / 2 x 2 B = 12 (1), the routed experts' over 2 pairs 3 x 2 x 6 / 2 x 2 B = 36 (1),
# the top-k 8 x 2 + 2 x (4 + 4) = 32 (1), align and sort 2 x 12 = 24 (2), moe_sum 3 x 8 x 2 = 48 (1), the shared
# experts' add 3 x 8 x 2 = 48 (1): 360 B in 10 kernels (both layers MoE)
SHARED = dataclasses.replace(TINY, shared_expert_intermediate_size=4)


def test_shared_experts_activation_is_its_own_kernel_at_one_rank():
    cost = elementwise_cost(SHARED, 2, 2)
    assert cost.group is None
    assert cost.bytes_per_token == 360
    assert cost.kernels == 10
    # the L2 holds each activation's own bytes: the shared experts' 12 B and the routed experts' 36 B a token
    assert ElementwiseKernel(1, 12) in cost.cached and ElementwiseKernel(1, 36) in cost.cached
    # at 1 µs a kernel and no bytes' time, one layer is the 10 kernels' floors
    assert cost.layer_time(1, 1e-6, float("inf")) == pytest.approx(10e-6)


def test_one_rank_and_a_group_count_the_same_activation_kernels():
    """The same kernels at D = 1 and D = 2: own + group kernels agree (only the tokens they run on differ)."""
    solo, grouped = elementwise_cost(SHARED, 2, 2), elementwise_cost(SHARED, 2, 2, data_parallel_size=2)
    assert solo.kernels == grouped.kernels + grouped.group.kernels == 10


def test_a_bundles_moe_block_counts_the_shared_activation_apart():
    """moe.csv's block: the two activations 12 + 36, top-k 32, align and sort 24, moe_sum 48, the add 48: 200 B in
    7 kernels."""
    block = moe_block_cost(SHARED, 2, 2)
    assert (block.bytes_per_token, block.kernels) == (200, 7)


# MiniMax-M2 (block FP8, 128 x 128; hidden 3,072, top 8 of experts 1,536 wide, every layer MoE, no shared experts)
# at TP 4, bf16: the routed experts' activation over 8 x 1,536 / 4 = 3,072 values a token (8 x 1,536 at D = 2, expert
# parallel) fused with the w2 input's quantization reads gate and up (2 x 3,072 x 2 B) and writes the product in FP8
# (3,072 B) with an fp32 scale per 128 (96 B): 15,456 B in one kernel, where an activation (3 x 3,072 x 2 B = 18,432)
# and a quantization (3,072 x 2 + 3,072 + 96 = 9,312) were 27,744 B in two
MINIMAX_FUSED, MINIMAX_APART = 2 * 3072 * 2 + 3072 + 96, 3 * 3072 * 2 + 3072 * 3 + 96


@pytest.mark.parametrize("block, kernels, moved", [
    ((128, 128), 1, MINIMAX_FUSED),
    ((64, 64), 2, MINIMAX_APART + 96),  # other blocks: two kernels (the scales one per 64: 192 B)
])
def test_block_fp8_experts_quantize_in_their_activation(block, kernels, moved):
    """The routed experts' activation and w2-input quantization against the same model in bf16 (its activation
    3 x 3,072 x 2 B, no quantization)."""
    m = dataclasses.replace(model_spec("minimax-m2"), weight_block_size=block)
    bf16 = dataclasses.replace(m, weight_quantization=None, weight_block_size=None)
    others = sum(w * 3 + w / block[1] * 4 for w in (3072, 1536, 3072))  # qkv_proj's, o_proj's, w13's quantizations
    fp8, plain = elementwise_cost(m, 2, 4), elementwise_cost(bf16, 2, 4)
    assert fp8.kernels - plain.kernels == 3 + kernels - 1
    assert fp8.bytes_per_token - plain.bytes_per_token == pytest.approx(others + moved - 3 * 3072 * 2)


def test_a_groups_fused_kernel_runs_on_the_groups_pairs():
    """At D = 2 the fused kernel is the group's, over each pair at the whole expert width (4 x 15,456 B a token)."""
    m = model_spec("minimax-m2")
    grouped = elementwise_cost(m, 2, 4, data_parallel_size=2)
    bf16 = elementwise_cost(dataclasses.replace(m, weight_quantization=None, weight_block_size=None), 2, 4,
                            data_parallel_size=2)
    assert grouped.group.kernels == bf16.group.kernels
    assert grouped.group.bytes_per_token - bf16.group.bytes_per_token == pytest.approx(4 * (MINIMAX_FUSED - 18432))
